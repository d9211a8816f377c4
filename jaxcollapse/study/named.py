"""A user's own metrics and collapse rules, by name: registered by a decorator (from a plugin, say) and
named in a study's TOML with any family, built-in or not.

    @register_metric("tail_mass", needs=("mean", "cov"))
    def tail_mass(family, config, source, params):      # params: name -> [n_chains, n_generations + 1, ...]
        return ...                                      # [n_chains, n_generations + 1]

    @register_collapse_rule("half_std")
    def half_std(family, config):
        return {"metric": "std", "below": 0.5}

    [run]
    derived_metrics = ["tail_mass"]     # computed after the run from the recorded parameter histories
    [collapse]
    rule = "half_std"                   # in place of metric = ... with below / above
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable

import numpy as np

from jaxcollapse._registry import Registry


@dataclasses.dataclass(frozen=True)
class Metric:
    fn: Callable
    needs: tuple[str, ...]    # the parameter histories it reads (checked against run.metrics)


METRICS = Registry("metric", definition=lambda metric: metric.fn)
COLLAPSE_RULES = Registry("collapse rule")


def register_metric(name: str, *, needs=()):
    """Decorator: a metric derived after the run, fn(family, config, source, params) -> [n_chains, n_generations + 1]
    (params: name -> recorded history); `needs`: the parameters it reads, which the run must record."""

    def add(fn):
        if not callable(fn):
            raise TypeError(f"register_metric({name!r}) decorates a function, got {fn!r}")
        METRICS.register(name, Metric(fn, tuple(needs)))
        return fn

    return add


def register_collapse_rule(name: str):
    """Decorator: a collapse rule, fn(family, config) -> {"metric": name, "below" | "above": number}."""
    return COLLAPSE_RULES.register(name)


def derived_metric(name: str, family, config: dict, source, params: dict) -> np.ndarray:
    """The registered metric's values for one run, checked: one number (or row) per chain and generation."""
    values = np.asarray(METRICS[name].fn(family, config, source, params))
    want = (config["run"]["n_chains"], config["run"]["n_generations"] + 1)
    if values.shape[:2] != want:
        raise ValueError(f"metric {name!r} returned shape {values.shape}; it must start with "
                         f"(n_chains, n_generations + 1) = {want}")
    return values


def collapse_rule(name: str, family, config: dict) -> dict:
    """The registered rule's {"metric": ..., "below" | "above": ...}, checked."""
    rule = COLLAPSE_RULES[name](family, config)
    sides = [side for side in ("below", "above") if isinstance(rule, dict) and side in rule]
    if not (isinstance(rule, dict) and isinstance(rule.get("metric"), str) and len(sides) == 1
            and set(rule) == {"metric", sides[0]} and isinstance(rule[sides[0]], numbers.Real)
            and not math.isnan(rule[sides[0]])):
        raise ValueError(f"collapse rule {name!r} returned {rule!r}; it must return "
                         '{"metric": name, "below": number} or {"metric": name, "above": number}')
    return {"metric": rule["metric"], sides[0]: float(rule[sides[0]])}
