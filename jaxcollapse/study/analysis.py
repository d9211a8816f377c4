"""Host-side analysis of finished runs: derived metrics, collapse rules and times, summaries."""
from __future__ import annotations

import numpy as np

from jaxcollapse.store import runs as io


def _family(config: dict):
    from jaxcollapse.study import config as config_lib

    return config_lib.make_family(config["family"])


def derived_names(config: dict) -> list[str]:
    """Metrics the run's family derives from its parameter histories after the run."""
    return _family(config).derived_names(config)


def derived_metrics(config: dict, family, source, params) -> dict:
    """The family's derived metrics (e.g. Gaussian std, GMM L2 to generation 0) from parameter histories."""
    if params is None or not family.derived_names(config):
        return {}
    if not isinstance(params, dict):
        params = params._asdict()
    return family.derived_metrics(config, source, params)


def collapse_rule(config: dict) -> dict:
    """The [collapse] table, or the family's default rule (dice: support size 1; Gaussian d = 1: std < 0.1 sigma)."""
    if config["collapse"]:
        return config["collapse"]
    return _family(config).collapse_rule(config)


def collapse_times(values, rule: dict, failed_from=None) -> np.ndarray:
    """[chains] first generation at which the metric crosses the threshold; -1 if it never does.

    failed_from ([chains], -1 for none, see failure_generations): a failed chain counts as collapsed at
    its failure generation if it had not crossed before (a degenerate model is a collapsed one).
    """
    values = np.asarray(values)
    with np.errstate(invalid="ignore"):
        crossed = values < rule["below"] if "below" in rule else values > rule["above"]
    crossed = crossed.reshape(crossed.shape[0], crossed.shape[1], -1).all(axis=-1)
    times = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    if failed_from is not None:
        failed_from = np.asarray(failed_from)
        earlier = (failed_from >= 0) & ((times < 0) | (failed_from < times))
        times = np.where(earlier, failed_from, times)
    return times


def failure_generations(results) -> np.ndarray:
    """[chains] first generation whose fit failed (a non-finite or degenerate model: info.finite False); -1 if none."""
    info = getattr(results, "info", None)
    finite = getattr(info, "finite", None) if not isinstance(info, dict) else info.get("finite")
    if finite is None:
        return np.full(results.n_chains, -1)
    bad = ~np.asarray(finite, bool).reshape(results.n_chains, -1)
    return np.where(bad.any(axis=1), bad.argmax(axis=1), -1)


def dropped(failed_from, n_generations: int) -> np.ndarray:
    """[chains, n_generations + 1] True from each failed chain's failure generation on."""
    failed_from = np.asarray(failed_from)
    generations = np.arange(n_generations + 1)
    return (failed_from[:, None] >= 0) & (generations[None, :] >= failed_from[:, None])


def sound(values, failed_from) -> np.ndarray:
    """values [chains, generations, ...] as float, NaN from each failed chain's failure generation on."""
    values = np.array(values, dtype=float)
    values[dropped(failed_from, values.shape[1] - 1)] = np.nan
    return values


def describe_failures(failed_from) -> str:
    """'2 failed from g = 178' (the first failure; ', the last at g = ...' when they differ), or ''."""
    failed = np.asarray(failed_from)[np.asarray(failed_from) >= 0]
    if failed.size == 0:
        return ""
    first, last = int(failed.min()), int(failed.max())
    return f"{failed.size:,} failed from g = {first:,}" + (f", the last at g = {last:,}" if last > first else "")


def nan_median(values, axis=0):
    """Median ignoring NaN (dropped chains); an all-NaN slice gives NaN without a warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def describe_rule(rule: dict) -> str:
    side, sign = ("below", "<") if "below" in rule else ("above", ">")
    return f"{rule['metric']} {sign} {rule[side]:g}"


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

def describe_config(config: dict) -> str:
    family = {k: v for k, v in config["family"].items() if k != "name"}
    settings = ", ".join(f"{k}={v}" for k, v in family.items())
    regime = config["regime"]["kind"] + (f"({config['regime']['fraction']})" if "fraction" in config["regime"] else "")
    return f"{config['family']['name']}({settings}), {regime}"
