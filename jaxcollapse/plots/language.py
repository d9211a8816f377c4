"""Figures of language-model chains (the paper's perplexity figures), over one or several runs.

    perplexity_histograms(runs, path)   per-sequence perplexity of each generation's generated text
                                        under the reference (generation-0) model: one panel per run,
                                        one histogram per generation, log x, all chains pooled
    heldout_perplexity(runs, path)      held-out perplexity per generation: median and 10-90% band
                                        across chains, one colour per run
    support(runs, path)                 vocabulary size and n-gram support size per generation

`runs` maps a label (e.g. "replace", "fresh_real(0.1)") to an io.Results of an n-gram run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxcollapse.plots._figure import colormap_colors, subplots
from jaxcollapse.plots.core import BAND, fan_chart


def _save(fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return Path(path)


def perplexity_histograms(runs: dict, path, generations=None) -> Path:
    """The paper's histogram figure: generated text scored by the generation-0 model, per generation."""
    first = next(iter(runs.values()))
    n_generations = first.metrics["generated_perplexity"].shape[1] - 1
    if generations is None:
        generations = sorted({0, 1, 2, 3, 5, n_generations // 2, n_generations} & set(range(n_generations + 1)))
    pooled = {label: np.asarray(r.metrics["generated_perplexity"], np.float64) for label, r in runs.items()}
    finite = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in pooled.values()])
    bins = np.geomspace(finite.min(), finite.max(), 60)
    colors = colormap_colors("viridis", np.linspace(0.0, 0.9, len(generations)))
    fig, axes = subplots(1, len(runs), figsize=(5.2 * len(runs), 3.8), sharex=True, sharey=True, squeeze=False)
    for ax, (label, values) in zip(axes[0], pooled.items()):
        for color, g in zip(colors, generations):
            v = values[:, g].ravel()
            ax.hist(v[np.isfinite(v)], bins=bins, histtype="step", lw=1.4, color=color, density=True,
                    label=f"generation {g}")
        ax.set_xscale("log")
        ax.set_xlabel("perplexity of a generated block under the generation-0 model")
        ax.set_title(f"{label}: {values.shape[0]} chains x {values.shape[2]} blocks", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("density")
    axes[0, -1].legend(fontsize=7, frameon=False)
    return _save(fig, path)


def heldout_perplexity(runs: dict, path) -> Path:
    fig, ax = subplots(figsize=(6.4, 4.0))
    for i, (label, r) in enumerate(runs.items()):
        fan_chart(ax, np.asarray(r.metrics["heldout_perplexity"]), label=label, color=f"C{i}", show_mean=False)
    ax.set_xlabel("generation")
    ax.set_ylabel("held-out perplexity (real text the chains never train on)")
    ax.set_title(f"median and {BAND[0]}-{BAND[1]}% of chains", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def support(runs: dict, path) -> Path:
    fig, axes = subplots(1, 2, figsize=(10.0, 3.8))
    for ax, metric, what in zip(axes, ("vocabulary_size", "ngram_support_size"),
                                ("token types in the training text", "distinct n-grams in the training text")):
        for i, (label, r) in enumerate(runs.items()):
            fan_chart(ax, np.asarray(r.metrics[metric], float), label=label, color=f"C{i}", show_mean=False)
        ax.set_xlabel("generation")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle(f"support decay: median and {BAND[0]}-{BAND[1]}% of chains", fontsize=10)
    return _save(fig, path)
