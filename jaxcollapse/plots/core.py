"""Figures of a results directory (matplotlib without pyplot; the core never imports this file).

For a run (jaxcollapse.study.plot(DIR) draws them all, with the family's study knowledge passed in):
    <metric>.png          fan chart over generations: median, 10-90% band across chains, the Monte
                          Carlo mean, and the closed form of jaxcollapse.theory where one applies
    collapse_times.png    histogram of the first generation at which the collapse rule holds
    support_decay.png     categorical: share of chains with each support size, per generation
    snapshots.png         the stored training points at the snapshot generations (2-D: with contours
                          of the fitted density when the parameters were recorded)
and for a sweep, compare_<metric>.png: the runs' medians and bands, one panel per setting (plot_compare).
The family's knowledge (closed forms, collapse rule, fitted density) comes in as arguments: plots read
results and import nothing of jaxcollapse.study.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np

from jaxcollapse import mixture_metrics
from jaxcollapse.families.gmm import GMMParams
from jaxcollapse.plots._figure import colormap_colors, subplots
from jaxcollapse.store import chains as store_chains
from jaxcollapse.store import runs as io

BAND = (10, 90)


# ---------------------------------------------------------------- pieces
def _bands(values):
    """10th, 50th, 90th percentiles and mean across chains, NaN (dropped chains) ignored; +-inf kept (they order)."""
    values = np.asarray(values, dtype=float)
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low, median, high = np.nanpercentile(values, (BAND[0], 50, BAND[1]), axis=0)
            mean = np.nanmean(values, axis=0)
    return low, median, high, mean


def _log_apt(*arrays) -> bool:
    """Log y where the values are positive and span more than two decades."""
    values = np.concatenate([np.ravel(a) for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0 or np.any(values <= 0):
        return False
    return values.max() / values.min() > 100


def fan_chart(ax, values, *, label=None, color="C0", theory=(), show_mean=True, failed_from=None):
    """Median and 10-90% band across chains of values [chain, generation]; returns the plotted arrays.

    failed_from ([chains], -1 for none): a failed chain is left out from its failure generation on.
    """
    if failed_from is not None:
        values = store_chains.sound(values, failed_from)
    generations = np.arange(values.shape[1])
    low, median, high, mean = _bands(values)
    ax.fill_between(generations, low, high, color=color, alpha=0.25, linewidth=0,
                    label=None if label else f"{BAND[0]}-{BAND[1]}% of chains")
    ax.plot(generations, median, color=color, lw=1.8, label=label or "median")
    drawn = [low, median, high]
    if show_mean:
        ax.plot(generations, mean, color=color, lw=1.0, ls="--", label=None if label else "mean")
        drawn.append(mean)
    for curve, curve_label in theory:
        ax.plot(generations, np.broadcast_to(curve, generations.shape), color="k", lw=1.2, ls=":", label=curve_label)
        drawn.append(np.asarray(curve))
    return drawn


def _chains_note(results: io.Results, failed_from) -> str:
    """'2,000 chains', or '1,998 of 2,000 chains at the last generation; 2 failed from g = 178 (left out from then on)'."""
    n = results.n_chains
    failures = store_chains.describe_failures(failed_from)
    if not failures:
        return f"{n:,} chains"
    kept = int(np.sum(np.asarray(failed_from) < 0))
    return f"{kept:,} of {n:,} chains at the last generation; {failures} (left out from then on)"


def _title(results: io.Results) -> str:
    config = results.config
    described = store_chains.describe_config(config)
    if len(described) > 70:  # long family settings (VAE, GMM): the family and regime only
        described = f"{config['family']['name']}, {described.rsplit('), ', 1)[-1]}"
    return f"{results.name}: {described}, n = {config['run']['n_samples']}"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


# ---------------------------------------------------------------- one run
def plot_metric(results: io.Results, metric: str, path: Path, theory=()) -> Path:
    """The fan chart of one metric; theory: (values, label) of closed forms drawn over it (one value per chain)."""
    values = np.asarray(results.metrics[metric])
    failed_from = store_chains.failure_generations(results)
    fig, ax = subplots(figsize=(6.4, 4.0))
    if values.ndim == 3:  # one value per component (GMM): a fan per index
        drawn = []
        for k in range(values.shape[2]):
            drawn += fan_chart(ax, values[:, :, k], label=f"{metric}[{k}] median", color=f"C{k}", show_mean=False,
                               failed_from=failed_from)
    else:
        drawn = fan_chart(ax, values, theory=theory, failed_from=failed_from)
    if _log_apt(*drawn):
        ax.set_yscale("log")
    ax.set_xlabel("generation")
    ax.set_ylabel(metric)
    ax.set_title(f"{_title(results)}\n{_chains_note(results, failed_from)}", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_collapse_times(results: io.Results, rule: dict, path: Path) -> Path | None:
    if rule.get("metric") not in results.metrics:
        return None
    failed_from = store_chains.failure_generations(results)
    times = store_chains.collapse_times(results.metrics[rule["metric"]], rule, failed_from)
    done = times[times >= 0]
    fig, ax = subplots(figsize=(6.4, 4.0))
    if done.size:
        bins = np.linspace(0, max(done.max(), 1), min(60, max(done.max(), 1) + 1) + 1)
        ax.hist(done, bins=bins, color="C3", alpha=0.8)
        ax.axvline(np.median(done), color="k", ls="--", lw=1, label=f"median {np.median(done):g}")
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel(f"collapse time: first generation with {store_chains.describe_rule(rule)}")
    ax.set_ylabel("chains")
    never = int(np.sum(times < 0))
    n_failed = int(np.sum(failed_from >= 0))
    ax.set_title(f"{_title(results)}\n{done.size} of {times.size} chains collapsed within "
                 f"{results.n_generations} generations" + (f" ({never} never)" if never else "")
                 + (f"; {n_failed} failed, counted at their failure generation" if n_failed else ""), fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_support_decay(results: io.Results, path: Path) -> Path | None:
    if "support_size" not in results.metrics or "n_states" not in results.config["family"]:
        return None
    support = np.asarray(results.metrics["support_size"])
    n_states = int(results.config["family"]["n_states"])
    generations = np.arange(support.shape[1])
    shares = np.stack([(support == k).mean(axis=0) for k in range(1, n_states + 1)])
    fig, ax = subplots(figsize=(6.4, 4.0))
    colors = colormap_colors("viridis", np.linspace(0.05, 0.95, n_states))
    ax.stackplot(generations, shares, labels=[f"{k} face{'s' if k > 1 else ''}" for k in range(1, n_states + 1)],
                 colors=colors, alpha=0.9)
    ax.set_xlim(0, generations[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel("generation")
    ax.set_ylabel("share of chains")
    ax.set_title(f"{_title(results)}\nsupport size (states with probability > 0)", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="center right", title="support", title_fontsize=7)
    return _save(fig, path)


def plot_snapshots(results: io.Results, path: Path, chains: int = 20, fitted_density=None) -> Path | None:
    """The training points at the snapshot generations, drawn according to their shape; 2-D points with the
    contours of fitted_density(params, chain, generation) -> (weights, means, covs) or None, where given."""
    if results.snapshots is None or not results.snapshot_at:
        return None
    samples, gens = np.asarray(results.snapshots), results.snapshot_at
    point_shape = samples.shape[3:]
    k = len(gens)
    if np.issubdtype(samples.dtype, np.integer) and point_shape == ():  # categorical states
        n_states = int(results.config["family"].get("n_states", samples.max() + 1))
        n_rows = min(chains, len(samples))
        fig, axes = subplots(1, k, figsize=(2.4 * k, 0.5 + 0.16 * n_rows), sharey=True, squeeze=False)
        for ax, j, g in zip(axes[0], range(k), gens):
            counts = np.stack([np.bincount(samples[c, j], minlength=n_states) for c in range(n_rows)])
            image = ax.imshow(counts, aspect="auto", cmap="magma_r", vmin=0, vmax=samples.shape[2],
                              interpolation="nearest")
            ax.set_title(f"generation {g}", fontsize=9)
            ax.set_xlabel("state")
            ax.set_xticks(range(n_states))
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axes[0, 0].set_ylabel("chain")
        fig.colorbar(image, ax=axes[0].tolist(), label="count in the sample", fraction=0.03)
    elif point_shape in ((), (1,)):
        fig, ax = subplots(figsize=(6.4, 4.0))
        colors = colormap_colors("plasma", np.linspace(0.1, 0.85, k))
        for j, g in enumerate(gens):
            ax.hist(samples[0, j].ravel(), bins=30, histtype="step", lw=1.5, color=colors[j], density=True,
                    label=f"generation {g}")
        ax.set_xlabel("x (chain 0)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8, frameon=False)
    elif point_shape == (2,):
        fitted = [None if fitted_density is None else fitted_density(results.params, 0, g) for g in gens]
        shared = not any(m is not None for m in fitted)  # with fits each panel zooms with its fit
        fig, axes = subplots(1, k, figsize=(2.8 * k, 2.8), sharex=shared, sharey=shared, squeeze=False)
        for ax, j, g in zip(axes[0], range(k), gens):
            points_and_density(ax, samples[0, j], fitted[j])
            ax.set_title(f"generation {g}", fontsize=9)
    elif len(point_shape) == 2:  # images
        n_images = min(8, samples.shape[2])
        fig, axes = subplots(k, n_images, figsize=(1.1 * n_images, 1.15 * k), squeeze=False)
        for j, g in enumerate(gens):
            for i in range(n_images):
                axes[j, i].imshow(samples[0, j, i], cmap="gray_r", vmin=0, vmax=1)
                axes[j, i].set_xticks([])
                axes[j, i].set_yticks([])
            axes[j, 0].set_ylabel(f"gen {g}", fontsize=8)
    else:
        return None
    drawn = point_shape == (2,) and any(m is not None for m in fitted)
    what = "training points and the density fitted to them (chain 0)" if drawn else "training points"
    fig.suptitle(f"{_title(results)}\n{what} at snapshot generations", fontsize=9, y=1.02)
    if not (np.issubdtype(samples.dtype, np.integer) and point_shape == ()):
        fig.tight_layout()
    return _save(fig, path)


def points_and_density(ax, x, mixture=None, *, half=None):
    """2-D points x [n, 2] and, given mixture = (weights, means, covs), contours of its density.

    The view is centred on the points and spans 4 fitted stds (or `half` either side), so a
    collapsing fit stays visible; contour levels are fixed fractions of the peak density.
    """
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.35, color="tab:blue")
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=6)
    if mixture is None:
        return
    weights, means, covs = mixture
    centre = x.mean(0)
    if half is None:
        half = max(4 * float(np.sqrt(np.max(np.trace(covs, axis1=1, axis2=2)))), 1e-3)
    grid = np.linspace(-half, half, 200)
    gx, gy = np.meshgrid(grid + centre[0], grid + centre[1])
    log_dens = mixture_metrics.log_prob(GMMParams(weights, means, covs), np.stack([gx.ravel(), gy.ravel()], 1))
    dens = np.exp(np.asarray(log_dens, np.float64)).reshape(gx.shape)
    if np.all(np.isfinite(dens)) and dens.max() > 0:
        ax.contour(gx, gy, dens, levels=dens.max() * np.array([0.02, 0.1, 0.3, 0.5, 0.7, 0.9]),
                   colors="tab:red", linewidths=0.8)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)


# ---------------------------------------------------------------- sweeps
def _label(value) -> str:
    if isinstance(value, dict):
        return value.get("kind", "") + (f"({value['fraction']})" if "fraction" in value else "")
    return str(value)


def plot_compare(path) -> list[Path]:
    """A sweep's compare_<metric>.png: lines = the last swept key, panels = the other swept keys' combinations."""
    sweep = io.Sweep(path)
    figures = Path(path) / "figures"
    figures.mkdir(exist_ok=True)
    keys = sweep.study["sweep"]
    line_key, panel_keys = keys[-1], keys[:-1]
    settings = sweep.settings
    panels: dict = {}
    for name in sweep:
        panel = tuple(_label(settings[name][k]) for k in panel_keys)
        panels.setdefault(panel, []).append(name)
    metrics = [m for m in next(iter(sweep.values())).metrics
               if all(m in r.metrics and np.ndim(r.metrics[m]) == 2 for r in sweep.values())]
    written, failed_runs = [], []
    n_cols = min(len(panels), 4)
    n_rows = math.ceil(len(panels) / n_cols)
    for metric in metrics:
        fig, axes = subplots(n_rows, n_cols, figsize=(max(3.6 * n_cols, 6.0), max(3.0 * n_rows, 3.8)), squeeze=False)
        for ax, (panel, names) in zip(axes.ravel(), panels.items()):
            drawn = []
            for i, name in enumerate(names):
                failed_from = store_chains.failure_generations(sweep[name])
                failures = store_chains.describe_failures(failed_from)
                failed_runs += [f"{name}: {failures}"] if failures and metric == metrics[0] else []
                drawn += fan_chart(ax, np.asarray(sweep[name].metrics[metric]), label=_label(settings[name][line_key]),
                                   color=f"C{i}", show_mean=False, failed_from=failed_from)
            if _log_apt(*drawn):
                ax.set_yscale("log")
            ax.set_title(", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(panel_keys, panel)) or metric,
                         fontsize=9)
            ax.set_xlabel("generation")
            ax.grid(alpha=0.3)
        for ax in axes.ravel()[len(panels):]:
            ax.set_visible(False)
        for row in axes:
            row[0].set_ylabel(metric)
        axes[0, 0].legend(fontsize=7, frameon=False, title=line_key.rsplit(".", 1)[-1], title_fontsize=7)
        note = "; ".join(failed_runs) if failed_runs else "no chain failed"
        fig.suptitle(f"{sweep.study['name']}: {metric}, median and {BAND[0]}-{BAND[1]}% band across chains\n"
                     f"({note}; a failed chain is left out from its failure generation on)", fontsize=10)
        fig.tight_layout()
        written.append(_save(fig, figures / f"compare_{metric}.png"))
    return written
