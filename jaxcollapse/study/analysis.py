"""Host-side analysis of finished runs: derived metrics, collapse rules and times, summaries."""
from __future__ import annotations

import math

import numpy as np

from jaxcollapse import io


def derived_names(config: dict) -> list[str]:
    recorded = config["run"].get("metrics")
    if config["family"]["name"] == "gmm":
        return ["l2_to_generation0"] if recorded is None or {"weights", "means", "covs"} <= set(recorded) else []
    if config["family"]["name"] != "gaussian":
        return []
    if recorded is not None and not {"mean", "cov"} <= set(recorded):
        return []
    has_source_params = "data" not in config["source"] and "dataset" not in config["source"]
    names = ["std"] if config["family"]["dim"] == 1 else []
    if has_source_params:
        names += ["mean_sq_error", "det_ratio"]
    return names


def derived_metrics(config: dict, family, source, params) -> dict:
    """Metrics computed from parameter histories: Gaussian std (d = 1), ||mean - mean_0||^2, det ratio;
    GMM: L2 distance to generation 0's mixture (the paper's curve)."""
    names = derived_names(config)
    if not names or params is None:
        return {}
    if not isinstance(params, dict):
        params = params._asdict()
    if "l2_to_generation0" in names:
        from jaxcollapse import mixture_metrics

        return {"l2_to_generation0": mixture_metrics.l2_to_generation(params, 0)}
    mean, cov = np.asarray(params["mean"]), np.asarray(params["cov"])
    out = {}
    if "std" in names:
        out["std"] = np.sqrt(cov[..., 0, 0])
    if "mean_sq_error" in names:
        out["mean_sq_error"] = np.sum((mean - np.asarray(source.mean)) ** 2, axis=-1)
    if "det_ratio" in names:
        _, logdet = np.linalg.slogdet(cov.astype(np.float64))
        _, logdet0 = np.linalg.slogdet(np.asarray(source.cov, np.float64))
        out["det_ratio"] = np.exp(logdet - logdet0).astype(cov.dtype)
    return out


def collapse_rule(config: dict) -> dict:
    """The [collapse] table, or a default for the family: support size 1 (dice), std < 0.1 sigma (d = 1)."""
    if config["collapse"]:
        return config["collapse"]
    family = config["family"]["name"]
    if family == "categorical" and (config["run"].get("metrics") is None
                                    or "support_size" in config["run"]["metrics"]):
        return {"metric": "support_size", "below": 2}
    if "std" in derived_names(config):
        sigma = 1.0
        source = config["source"]
        if "cov" in source:
            sigma = math.sqrt(source["cov"][0][0])
        elif "std" in source:
            sigma = source["std"]
        return {"metric": "std", "below": 0.1 * sigma}
    return {}


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
