"""What a finished run's records say chain by chain: which chains failed and from which generation, the
values with those chains left out, when each chain met a collapse rule; and a run's config and rule in words.
Plain numpy over a store Results (figures and the study's summaries both read these)."""
from __future__ import annotations

import warnings

import numpy as np


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


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


def describe_rule(rule: dict) -> str:
    side, sign = ("below", "<") if "below" in rule else ("above", ">")
    return f"{rule['metric']} {sign} {rule[side]:g}"


def describe_config(config: dict) -> str:
    family = {k: v for k, v in config["family"].items() if k != "name"}
    settings = ", ".join(f"{k}={v}" for k, v in family.items())
    regime = config["regime"]["kind"] + (f"({config['regime']['fraction']})" if "fraction" in config["regime"] else "")
    return f"{config['family']['name']}({settings}), {regime}"
