"""Host-side analysis of finished runs: derived metrics, collapse rules and times, summaries."""
from __future__ import annotations

import numpy as np

from jaxcollapse import io


def _family(config: dict):
    from jaxcollapse import config as config_lib

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


def collapse_times(values, rule: dict) -> np.ndarray:
    """[chains] first generation at which the metric crosses the threshold; -1 if it never does."""
    values = np.asarray(values)
    crossed = values < rule["below"] if "below" in rule else values > rule["above"]
    crossed = crossed.reshape(crossed.shape[0], crossed.shape[1], -1).all(axis=-1)
    return np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)


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
    lines = [f"median over {results.n_chains} chains:",
             "  generation" + "".join(f"{n:>{width}}" for n in names)]
    for g in gens:
        cells = "".join(f"{np.median(results.metrics[n][:, g]):>{width}.4g}" for n in names)
        lines.append(f"  {g:>10}" + cells)
    if rule and rule["metric"] in results.metrics:
        times = collapse_times(results.metrics[rule["metric"]], rule)
        done = times >= 0
        text = f"collapse ({describe_rule(rule)}): {done.mean():.0%} of chains by generation {n_gen}"
        if done.any():
            text += f"; median time {np.median(times[done]):g} generations (among those)"
        lines.append(text)
    manifest = results.manifest
    lines.append(f"{manifest['wall_seconds']:.1f} s, {manifest['chain_generations_per_second']:.3g} "
                 f"chain-generations/s on {manifest['backend']}"
                 + (f"; {manifest['failed_chains']} chains had non-finite fits" if manifest["failed_chains"] else ""))
    return "\n".join(lines)

def describe_config(config: dict) -> str:
    family = {k: v for k, v in config["family"].items() if k != "name"}
    settings = ", ".join(f"{k}={v}" for k, v in family.items())
    regime = config["regime"]["kind"] + (f"({config['regime']['fraction']})" if "fraction" in config["regime"] else "")
    return f"{config['family']['name']}({settings}), {regime}"
