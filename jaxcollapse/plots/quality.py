"""Figures of quality-checked synthetic data (matplotlib, Agg; the core never imports this file).

    phase_diagram   a [regime] grid of two numbers (filter strength x real fraction, ...), one
                    vmapped run: per cell the median over its chains of the final distance to
                    the source and of the collapse time, with the 10-90% band across chains
    reward_curve    curation: E_{p_t}[r] per generation, per real fraction, median and band, with
                    the n -> infinity recursion of theory.curation_recursion
    feedback_trace  adaptive_real: the real share used and the degradation seen, per generation,
                    against fixed keep_real fractions and the tolerance

plot_run(results, rule, grid) and plot_sweep(path, regime_grid) pick the figures that apply to a results
directory (the study passes in its collapse rule and [regime] grid); the functions below take plain arrays
so a notebook can call them too.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import matplotlib.colors
import numpy as np

from jaxcollapse.plots._figure import colormap_colors, subplots
from jaxcollapse.store import chains as store_chains
from jaxcollapse.store import runs as io
from jaxcollapse.theory import quality as theory_quality

BAND = (10, 90)


def _percentiles(values, axis=0):
    values = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(values, (BAND[0], 50, BAND[1]), axis=axis)


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _save(fig, path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _fmt(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{value:.2g}" if abs(value) < 10 else f"{value:.0f}"


# ---------------------------------------------------------------- phase diagram
def _cell_masks(cells, nx, ny):
    return [[(cells[:, 0] == j) & (cells[:, 1] == i) for j in range(nx)] for i in range(ny)]


def _heatmap(fig, ax, colour, texts, axes, *, label, log_colour=False, vmin=None, vmax=None):
    (x_name, x_values), (y_name, y_values) = axes
    finite = colour[np.isfinite(colour)]
    norm = None
    if log_colour and finite.size and finite.min() > 0:
        norm = matplotlib.colors.LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.01))
    image = ax.imshow(colour, origin="lower", aspect="auto", cmap="viridis", norm=norm, vmin=None if norm else vmin,
                      vmax=None if norm else vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).set_label(label, fontsize=8)
    for i in range(len(y_values)):
        for j in range(len(x_values)):
            shade = image.norm(colour[i, j]) if np.isfinite(colour[i, j]) else 0.0
            ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=6.5,
                    color="black" if shade > 0.6 else "white")
    ax.set_xticks(range(len(x_values)), [f"{v:g}" for v in x_values])
    ax.set_yticks(range(len(y_values)), [f"{v:g}" for v in y_values])
    ax.set_xlabel(_short(x_name))
    ax.set_ylabel(_short(y_name))


def phase_diagram(path, cells, axes, distance, *, distance_label="distance", times=None, rule="", title=""):
    """Per grid cell: the median final distance to the source (10-90% band written in the cell), the share
    of chains collapsed and their median collapse time, and the distances as lines with bands.

    cells: [n_chains, 2] each chain's (column, row) index; axes: [(name, values)] for the columns (x) and
    rows (y); distance: [n_chains] final distance; times: [n_chains] collapse generation, -1 = never.
    """
    (x_name, x_values), (y_name, y_values) = axes
    nx, ny = len(x_values), len(y_values)
    masks = _cell_masks(cells, nx, ny)
    n_panels = 3 if times is not None else 2
    fig, grid = subplots(1, n_panels, figsize=(4.9 * n_panels, 4.3))
    bands = np.array([[_percentiles(distance[m]) for m in row] for row in masks])   # [ny, nx, 3]
    texts = [[f"{_fmt(b[1])}\n[{_fmt(b[0])}, {_fmt(b[2])}]" for b in row] for row in bands]
    _heatmap(fig, grid[0], bands[..., 1], texts, axes, label=f"median {distance_label}", log_colour=True)
    grid[0].set_title(f"{distance_label}: median [{BAND[0]}%, {BAND[1]}%] over chains", fontsize=9)
    if times is not None:
        share = np.array([[np.mean(times[m] >= 0) for m in row] for row in masks])
        texts = []
        for i, row in enumerate(masks):
            texts.append([])
            for j, m in enumerate(row):
                t = times[m][times[m] >= 0]
                texts[i].append(f"{share[i, j]:.0%}" + (f"\nt = {np.median(t):.0f}" if t.size else ""))
        _heatmap(fig, grid[1], share, texts, axes, label="share of chains collapsed", vmin=0.0, vmax=1.0)
        grid[1].set_title(f"collapsed ({rule}): share, median time", fontsize=9)
    ax = grid[-1]
    colors = colormap_colors("plasma", np.linspace(0.05, 0.85, ny))
    positions = np.arange(nx)
    for i in range(ny):
        ax.fill_between(positions, bands[i, :, 0], bands[i, :, 2], color=colors[i], alpha=0.15, linewidth=0)
        ax.plot(positions, bands[i, :, 1], "o-", color=colors[i], lw=1.6, ms=3.5, label=f"{y_values[i]:g}")
    if np.all(bands[np.isfinite(bands)] > 0):
        ax.set_yscale("log")
    ax.set_xticks(positions, [f"{v:g}" for v in x_values])
    ax.set_xlabel(_short(x_name))
    ax.set_ylabel(distance_label)
    ax.grid(alpha=0.3)
    ax.legend(title=_short(y_name), fontsize=7, title_fontsize=7, frameon=False)
    ax.set_title(f"{distance_label}: median, {BAND[0]}-{BAND[1]}% band", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- curation
def reward_curve(path, panels, groups, *, title=""):
    """Curation figures side by side. panels: [(values [n_chains, G + 1], ylabel, theory {group label: [G + 1]})];
    groups: [(label, chain mask)], one colour each: median, 10-90% band, mean, and the theory curve."""
    fig, axes = subplots(1, len(panels), figsize=(6.2 * len(panels), 4.2), squeeze=False)
    for ax, (values, ylabel, theory) in zip(axes[0], panels):
        generations = np.arange(values.shape[1])
        for i, (label, chosen) in enumerate(groups):
            low, median, high = _percentiles(values[chosen])
            ax.fill_between(generations, low, high, color=f"C{i}", alpha=0.2, linewidth=0)
            ax.plot(generations, median, color=f"C{i}", lw=1.8, label=f"{label}: median")
            ax.plot(generations, values[chosen].mean(axis=0), color=f"C{i}", lw=1.0, ls="--")
            if theory and label in theory:
                ax.plot(generations, theory[label], color="k", lw=1.0, ls=":")
        ax.plot([], [], color="grey", ls="--", lw=1.0, label="mean over chains")
        if theory:
            ax.plot([], [], color="k", ls=":", lw=1.0, label=r"$n\to\infty$ recursion (exact curation step)")
        ax.set_xlabel("generation")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, frameon=False, loc="lower right")
    fig.suptitle(title + f"\nmedian, {BAND[0]}-{BAND[1]}% band across chains", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- feedback
HOLD_LIMIT = 0.1  # a regime "holds" the tolerance when at most this share of chain-generations (g >= 1) exceed it


def breach_share(degradation, tolerance) -> float:
    """Share of chain-generations g >= 1 whose degradation exceeds the tolerance."""
    return float(np.mean(np.asarray(degradation)[:, 1:] > tolerance))


def feedback_trace(path, share, degradation, tolerance, *, fixed=(), title="", metric="degradation"):
    """The adaptive run's real share and degradation per generation; with fixed = [(fraction, degradation
    [chains, G + 1])] also the fixed keep_real runs: the smallest that holds the tolerance (and the next
    smaller) drawn against it, and every run's breach share against its average real share."""
    fixed = sorted(fixed, key=lambda item: item[0])
    mean_share = float(np.mean(np.asarray(share)[:, 1:]))
    adaptive_breach = breach_share(degradation, tolerance)
    holding = [f for f, d in fixed if breach_share(d, tolerance) <= HOLD_LIMIT]
    n_panels = 3 if fixed else 2
    fig, axes = subplots(1, n_panels, figsize=(5.4 * n_panels, 4.2))
    generations = np.arange(share.shape[1])
    ax = axes[0]
    low, median, high = _percentiles(share)
    ax.fill_between(generations, low, high, color="C0", alpha=0.25, linewidth=0)
    ax.plot(generations, median, color="C0", lw=1.8, label="adaptive_real: median")
    ax.plot(generations, share.mean(axis=0), color="C0", lw=1.0, ls="--", label=f"mean (g >= 1: {mean_share:.3f})")
    if holding:
        ax.axhline(holding[0], color="C3", lw=1.2, ls=":", label=f"smallest fixed keep_real that holds: {holding[0]:g}")
    ax.set_ylabel("real share of the training set")
    ax.set_xlabel("generation")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.set_title("real share used, per chain and generation", fontsize=9)
    ax = axes[1]
    shown = []
    if holding:
        below = [f for f, _ in fixed if f < holding[0]]
        shown = [f for f in (below[-1] if below else None, holding[0]) if f is not None]
    for i, f in enumerate(shown):
        d = dict(fixed)[f]
        lo, med, hi = _percentiles(d)
        ax.fill_between(generations, lo, hi, color=f"C{i + 2}", alpha=0.12, linewidth=0)
        ax.plot(generations, med, color=f"C{i + 2}", lw=1.2, label=f"keep_real {f:g} ({breach_share(d, tolerance):.0%} over)")
    low, median, high = _percentiles(degradation)
    ax.fill_between(generations, low, high, color="C0", alpha=0.25, linewidth=0)
    ax.plot(generations, median, color="C0", lw=1.8, label=f"adaptive_real ({adaptive_breach:.0%} over)")
    ax.axhline(tolerance, color="k", lw=1.2, ls="--", label=f"tolerance {tolerance:g}")
    ax.set_xlabel("generation")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    ax.set_title("degradation (share of chain-generations over the tolerance)", fontsize=9)
    if fixed:
        ax = axes[2]
        fractions = [f for f, _ in fixed]
        breaches = [breach_share(d, tolerance) for _, d in fixed]
        ax.plot(fractions, breaches, "o-", color="C1", lw=1.5, label="fixed keep_real")
        for f, b in zip(fractions, breaches):
            ax.annotate(f"{f:g}", (f, b), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.plot([mean_share], [adaptive_breach], "*", color="C0", ms=14, label="adaptive_real (mean share)")
        ax.axhline(HOLD_LIMIT, color="k", lw=1.0, ls="--", label=f"holds: <= {HOLD_LIMIT:.0%} over the tolerance")
        ax.set_xlabel("average real share of the training set")
        ax.set_ylabel("share of chain-generations over the tolerance")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False, loc="upper right")
        ax.set_title("real data spent vs tolerance kept", fontsize=9)
    fig.suptitle(title + f"; bands: {BAND[0]}-{BAND[1]}% across chains", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- results directories
def _stages(config) -> list[dict]:
    regime = config["regime"]
    return regime["stages"] if regime["kind"] == "pipeline" else [regime]


def describe_regime(config) -> str:
    """filter_top(score=source, keep) -> keep_real(fraction): grid axes by name, other settings by value."""
    parts = []
    for stage in _stages(config):
        settings = [k if isinstance(v, list) and k != "reward" else f"{k}={v}" for k, v in stage.items() if k != "kind"]
        parts.append(f"{stage['kind']}({', '.join(settings)})")
    return " -> ".join(parts)


def final_distance(results) -> tuple[str, np.ndarray] | None:
    for name in ("w2_to_source", "tv_to_source", "l2_to_source", "kl_to_source"):
        if name in results.metrics and np.ndim(results.metrics[name]) == 2:
            return name, np.asarray(results.metrics[name][:, -1], float)
    return None


def plot_run(results, rule: dict, grid) -> list[Path]:
    """The quality figures that apply to one run (none for a run without quality stages or a grid); rule: its
    collapse rule ({} for none), grid: its [regime] grid (axes [(key, values)], cells [n_chains, n_axes])."""
    config, figures = results.config, Path(results.path) / "figures"
    figures.mkdir(exist_ok=True)
    written = []
    axes, cells = grid
    name = results.name
    if len(axes) == 2 and final_distance(results):
        metric, final = final_distance(results)
        times = None
        if rule and rule["metric"] in results.metrics:
            times = store_chains.collapse_times(results.metrics[rule["metric"]], rule)
        per_cell = results.n_chains // (len(axes[0][1]) * len(axes[1][1]))
        family = ", ".join(f"{k}={v}" for k, v in config["family"].items() if k != "name")
        title = (f"{name}: {config['family']['name']}({family}), {describe_regime(config)}, n = {config['run']['n_samples']}, "
                 f"{results.n_generations} generations; {per_cell} chains per cell, one vmapped run")
        written.append(phase_diagram(figures / "phase_diagram.png", cells, axes, final,
                                     distance_label=f"{metric} at generation {results.n_generations}", times=times,
                                     rule=store_chains.describe_rule(rule) if times is not None else "", title=title))
    stages = _stages(config)
    curate = next((s for s in stages if s["kind"] == "curate"), None)
    if curate is not None and results.params is not None and "probs" in results.params:
        written.append(_curation_figure(results, curate, axes, cells, figures / "reward_curve.png"))
    if "real_share" in results.metrics and "feedback_degradation" in results.metrics:
        tolerance = next(s for s in stages if s["kind"] == "adaptive_real")["tolerance"]
        written.append(feedback_trace(figures / "feedback_trace.png", np.asarray(results.metrics["real_share"]),
                                      np.asarray(results.metrics["feedback_degradation"]), tolerance,
                                      title=f"{name}: adaptive real share", metric="degradation seen (loss - loss_0)"))
    return written


def _curation_figure(results, curate, axes, cells, path):
    reward = np.asarray(curate["reward"])
    probs = np.asarray(results.params["probs"], float)
    source = np.asarray(results.config["source"].get("probs", np.full(probs.shape[-1], 1.0 / probs.shape[-1])))
    best = int(np.argmax(reward))
    fraction_axis = next((a for a, (key, _) in enumerate(axes) if key.endswith("fraction")), None)
    fractions = [0.0] if fraction_axis is None else axes[fraction_axis][1]
    groups, rewards, argmax = [], {}, {}
    for i, f in enumerate(fractions):
        label = "curated" if fraction_axis is None else f"keep_real {f:g}"
        groups.append((label, np.ones(len(probs), bool) if fraction_axis is None else cells[:, fraction_axis] == i))
        recursion = theory_quality.curation_recursion(source, reward, curate["k"], results.n_generations, fraction=f)
        rewards[label], argmax[label] = theory_quality.expected_reward(recursion, reward), recursion[:, best]
    panels = [(theory_quality.expected_reward(probs, reward), r"expected reward $E_{p_t}[r]$", rewards),
              (probs[..., best], f"$p_t$(state {best}), the reward's argmax", argmax)]
    return reward_curve(path, panels, groups,
                        title=f"{results.name}: each point the softmax(reward) pick of k = {curate['k']} candidates, "
                              f"reward per state {reward.tolist()}, n = {results.config['run']['n_samples']}")


def plot_sweep(path, regime_grid) -> list[Path]:
    """A sweep holding an adaptive_real run and fixed keep_real runs: the feedback comparison figure;
    regime_grid(config) -> (axes, cells), each fixed run's [regime] grid."""
    sweep = io.Sweep(path)
    adaptive = [r for r in sweep.values() if "real_share" in r.metrics]
    fixed = [r for r in sweep.values() if r.config["regime"]["kind"] == "keep_real"]
    if not adaptive or not fixed:
        return []
    metric, reference = feedback_metric(adaptive[0])
    if metric is None:
        return []
    run = adaptive[0]
    tolerance = next(s for s in _stages(run.config) if s["kind"] == "adaptive_real")["tolerance"]
    lines = []
    for results in fixed:
        axes, cells = regime_grid(results.config)
        _, values = feedback_metric(results)
        fractions = axes[0][1] if axes else [results.config["regime"]["fraction"]]
        for i, f in enumerate(fractions):
            lines.append((f, values[cells[:, 0] == i] if axes else values))
    figures = Path(path) / "figures"
    figures.mkdir(exist_ok=True)
    return [feedback_trace(figures / "feedback_vs_keep_real.png", np.asarray(run.metrics["real_share"]), reference,
                           tolerance, fixed=lines, title=f"{sweep.study['name']}: adaptive real share vs fixed keep_real",
                           metric=f"{metric} - generation 0's")]


def feedback_metric(results) -> tuple[str | None, np.ndarray | None]:
    """The population version of the loss adaptive_real watches, per chain and generation, minus generation 0's:
    Gaussian: KL(source || model) (the held-out NLL's expectation, up to the source entropy); else the negative
    held-out log-likelihood the family records."""
    for name, sign in (("kl_to_source", 1.0), ("heldout_loglik", -1.0)):
        if name in results.metrics:
            values = sign * np.asarray(results.metrics[name], float)
            return name if sign > 0 else f"-{name}", values - values[:, :1]
    return None, None
