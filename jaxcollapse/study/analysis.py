"""Host-side analysis of finished runs: derived metrics and the collapse rule (from the family's study
knowledge), and a run's summary. The chain-by-chain readings (failures, collapse times) are store.chains'."""
from __future__ import annotations

import numpy as np

from jaxcollapse.store import runs as io
from jaxcollapse.store.chains import (
    collapse_times,
    describe_config,
    describe_failures,
    describe_rule,
    dropped,
    failure_generations,
    nan_median,
    sound,
)
from jaxcollapse.study import config as config_lib
from jaxcollapse.study import named
from jaxcollapse.study.knowledge import knowledge_for

__all__ = ["collapse_rule", "collapse_times", "derived_metrics", "derived_names", "describe_config", "describe_failures",
           "describe_rule", "dropped", "failure_generations", "nan_median", "sound", "summary"]


def derived_names(config: dict) -> list[str]:
    """Metrics the run's family derives from its parameter histories after the run, then run.derived_metrics."""
    family = config_lib.make_family(config["family"])
    return knowledge_for(family).derived_names(family, config) + list(config["run"].get("derived_metrics", ()))


def derived_metrics(config: dict, family, source, params) -> dict:
    """The family's derived metrics (e.g. Gaussian std, GMM L2 to generation 0) from parameter histories, then
    the registered metrics run.derived_metrics names (study.register_metric)."""
    knowledge = knowledge_for(family)
    if params is not None and not isinstance(params, dict):
        params = params._asdict()
    out = {}
    if params is not None and knowledge.derived_names(family, config):
        out.update(knowledge.derived_metrics(family, config, source, params))
    for name in config["run"].get("derived_metrics", ()):
        out[name] = named.derived_metric(name, family, config, source, params or {})
    return out


def collapse_rule(config: dict) -> dict:
    """The [collapse] table (a registered rule's, for rule = "name"), or the family's default rule (dice: support
    size 1; Gaussian d = 1: std < 0.1 sigma)."""
    if config["collapse"] and "rule" not in config["collapse"]:
        return config["collapse"]
    family = config_lib.make_family(config["family"])
    if config["collapse"]:
        return named.collapse_rule(config["collapse"]["rule"], family, config)
    return knowledge_for(family).collapse_rule(family, config)


def summary(results: "io.Results", max_metrics: int = 4) -> str:
    """A few lines: the median of key metrics at a few generations, collapse times, speed."""
    config = results.config
    n_gen = results.n_generations
    rule = collapse_rule(config)
    names = [n for n, v in results.metrics.items() if np.ndim(v) == 2]
    if rule and rule["metric"] in names:
        names.remove(rule["metric"])
        names.insert(0, rule["metric"])
    names = names[:max_metrics]
    gens = sorted({0, *[int(round(n_gen * f)) for f in (0.01, 0.1, 0.25, 0.5)], n_gen})
    gens = [g for g in gens if 0 <= g <= n_gen]
    width = max(12, *(len(n) + 2 for n in names)) if names else 12
    failed_from = failure_generations(results)
    values = {n: sound(results.metrics[n], failed_from) for n in names}
    kept = {g: int(np.sum((failed_from < 0) | (failed_from > g))) for g in gens}
    partial = any(k < results.n_chains for k in kept.values())
    header = f"median over {results.n_chains:,} chains"
    if partial:  # a failed chain's numbers after its failure are not the phenomenon: left out, and said so
        header += f"; {describe_failures(failed_from)}, each left out from then on (column chains: those kept)"
    lines = [header + ":", "  generation" + (f"{'chains':>8}" if partial else "") + "".join(f"{n:>{width}}" for n in names)]
    for g in gens:
        cells = "".join(f"{nan_median(values[n][:, g]):>{width}.4g}" for n in names)
        lines.append(f"  {g:>10}" + (f"{kept[g]:>8}" if partial else "") + cells)
    mask = dropped(failed_from, n_gen)
    stray = sum(int(np.sum(np.isnan(v).reshape(v.shape[0], v.shape[1], -1).any(-1) & ~mask)) for v in values.values())
    if stray:
        lines.append(f"  ({stray:,} NaN values of chains not marked failed were left out of the medians)")
    if rule and rule["metric"] in results.metrics:
        times = collapse_times(results.metrics[rule["metric"]], rule, failed_from)
        done = times >= 0
        text = f"collapse ({describe_rule(rule)}): {done.mean():.0%} of chains by generation {n_gen}"
        if done.any():
            text += f"; median time {np.median(times[done]):g} generations (among those)"
        if np.any(failed_from >= 0):
            text += "; a failed chain counts as collapsed at its failure generation"
        lines.append(text)
    manifest = results.manifest
    lines.append(f"{manifest['wall_seconds']:.1f} s, {manifest['chain_generations_per_second']:.3g} "
                 f"chain-generations/s on {manifest['backend']}")
    return "\n".join(lines)

