"""Every figure of a results directory: the drawings of jaxcollapse.plots, given what the study knows of
the run's family (closed forms over its metrics, its collapse rule, its fitted density under 2-D snapshots,
its own figures) and of its [regime] grid. Writes into DIR/figures/ and returns the paths written."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxcollapse.plots import core as plots_core
from jaxcollapse.plots import quality as plots_quality
from jaxcollapse.store import runs as io
from jaxcollapse.study import config as config_lib
from jaxcollapse.study.analysis import collapse_rule
from jaxcollapse.study.build import regime_grid
from jaxcollapse.study.knowledge import knowledge_for


def theory_curves(config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
    """(values, label) of the family's closed forms that apply to this run's metric."""
    family = config_lib.make_family(config["family"])
    return knowledge_for(family).theory_curves(family, config, metric, generations)


def plot_run(path) -> list[Path]:
    """Every figure of one run's directory, into DIR/figures/."""
    results = io.Results(path)
    config = results.config
    family = config_lib.make_family(config["family"])
    knowledge = knowledge_for(family)
    figures = Path(path) / "figures"
    figures.mkdir(exist_ok=True)
    written = []
    for metric, values in results.metrics.items():
        if np.ndim(values) == 2:
            curves = knowledge.theory_curves(family, config, metric, np.arange(np.shape(values)[1]))
            written.append(plots_core.plot_metric(results, metric, figures / f"{metric}.png", theory=curves))
        elif np.ndim(values) == 3 and np.shape(values)[2] <= 8:  # one fan per component: no closed form
            written.append(plots_core.plot_metric(results, metric, figures / f"{metric}.png"))
    rule = collapse_rule(config)
    density = lambda params, chain, generation: knowledge.fitted_density_2d(family, params, chain, generation)
    extra = [plots_core.plot_collapse_times(results, rule, figures / "collapse_times.png") if rule else None,
             plots_core.plot_support_decay(results, figures / "support_decay.png"),
             plots_core.plot_snapshots(results, figures / "snapshots.png", fitted_density=density)]
    extra += knowledge.figures(family, results, figures)
    return written + [p for p in extra if p is not None] + plots_quality.plot_run(results, rule, regime_grid(config))


def plot_sweep(path) -> list[Path]:
    """A sweep's comparison figures (compare_<metric>.png, and adaptive against fixed real shares)."""
    return plots_core.plot_compare(path) + plots_quality.plot_sweep(path, regime_grid)


def plot(path) -> list[Path]:
    """All figures of a results directory (a run or a sweep)."""
    path = Path(path)
    if (path / "study.json").exists():
        sweep = io.Sweep(path)
        written = []
        for name in sweep:
            written += plot_run(path / name)
        return written + plot_sweep(path)
    return plot_run(path)
