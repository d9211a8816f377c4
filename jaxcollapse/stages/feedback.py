"""Feedback: a real-data share that follows how the trained model does on held-out real data.

adaptive_real(metric, tolerance, ...) watches a loss of the current model (default: its negative
mean log-likelihood on held-out real points) against generation 0's. Each generation, before the
training set is formed: degraded (loss - loss_0 > tolerance) -> share + step_up, else share -
step_down, clipped to [low, high]; then round(share * n) of the n training points are the
generation-0 real sample (as keep_real) and the rest synthetic. The share used and the
degradation seen are recorded per chain and generation (real_share, feedback_degradation).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks, types
from jaxcollapse._registry import Registry
from jaxcollapse.stages.base import number, stage
from jaxcollapse.stages.mixing import _mix
from jaxcollapse.stages.registry import register_stage

HELDOUT_STREAM = 0x5EED  # fold_in(generation-0 real key, .): the stage's own held-out draw (parametric sources)

FEEDBACK_METRICS = Registry("feedback metric")


def register_feedback_metric(name: str):
    """Decorator: a loss named in TOML (adaptive_real's metric): fn(ctx) -> one number (lower = better) of the
    current model ctx.params; or a class with init(real, ctx) -> state and __call__(state, ctx), made with
    cls(n_heldout=...)."""
    return FEEDBACK_METRICS.register(name)


class AdaptiveState(NamedTuple):
    real: Any          # the generation-0 real sample
    heldout: Any       # held-out real points the loss is measured on (or None for a user metric)
    baseline: Any      # [] loss of the generation-0 model
    share: Any         # [] the share the next decision starts from (start, then the last one used)
    used: Any          # [] real share of this generation's training set (1 at generation 0: all real)
    degradation: Any   # [] loss of the model that generated this generation's batch, minus the baseline


@register_feedback_metric("heldout_nll")
class HeldoutNLL(NamedTuple):
    """-mean log p(heldout) under the current model: the source's held-out points, else n_heldout drawn once."""

    n_heldout: int = 1000
    name: str = "heldout_nll"

    def init(self, real, ctx):
        if ctx.source.heldout is not None:
            return ctx.source.heldout
        return ctx.family.sample(jax.random.fold_in(ctx.real_key, HELDOUT_STREAM), ctx.source.params, self.n_heldout) \
            if ctx.source.params is not None else types.draw_real(
                ctx.family, ctx.source, jax.random.fold_in(ctx.real_key, HELDOUT_STREAM), self.n_heldout)

    def __call__(self, heldout, ctx):
        return -jnp.mean(ctx.family.log_prob(ctx.params, heldout))


class FunctionMetric(NamedTuple):
    fn: Callable
    name: str = "function"

    def init(self, real, ctx):
        return None

    def __call__(self, heldout, ctx):
        return self.fn(ctx)


@stage(static=("metric", "n_heldout"))
class AdaptiveReal:
    tolerance: Any = dataclasses.field(metadata={"toml": "nonnegative", "required": True})
    step_up: Any = dataclasses.field(metadata={"toml": "share"})
    step_down: Any = dataclasses.field(metadata={"toml": "share"})
    start: Any = dataclasses.field(metadata={"toml": "share"})
    low: Any = dataclasses.field(metadata={"toml": "share"})
    high: Any = dataclasses.field(metadata={"toml": "share"})
    metric: Any = dataclasses.field(metadata={"toml": FEEDBACK_METRICS})
    n_heldout: int = dataclasses.field(default=1000, metadata={"toml": "count"})   # the metric's, when it draws
    name = "adaptive_real"

    def init(self, real, ctx):
        heldout = self.metric.init(real, ctx)
        loss = jnp.asarray(self.metric(heldout, ctx))
        if loss.shape != ():
            raise ValueError(f"adaptive_real: metric must return one number per chain (shape ()), got {loss.shape}")
        dtype = jnp.result_type(float)
        start = jnp.clip(self.start, self.low, self.high).astype(dtype)
        return AdaptiveState(real, heldout, loss.astype(dtype), start, jnp.ones((), dtype), jnp.zeros((), dtype))

    def update(self, key, state, batch, ctx):
        share = state.share
        degradation = self.metric(state.heldout, ctx) - state.baseline
        degraded = degradation > self.tolerance  # NaN (a broken model) never counts as healthy
        share = jnp.clip(jnp.where(degraded | jnp.isnan(degradation), share + self.step_up, share - self.step_down),
                         self.low, self.high)
        n = types.n_points(batch.x)
        used = (jnp.round(share * n) / n).astype(share.dtype)  # the share the training set really has
        state = state._replace(share=share, used=used, degradation=degradation.astype(state.degradation.dtype))
        return state, _mix(share, state.real, batch)

    def record(self, state) -> dict:
        return {"real_share": state.used, "feedback_degradation": state.degradation}


@register_stage("adaptive_real")
def adaptive_real(metric="heldout_nll", tolerance=0.05, *, step_up=0.2, step_down=0.01, start=0.5,
                  low=0.0, high=1.0, n_heldout: int = 1000) -> AdaptiveReal:
    """A real-data share raised when the model degrades past `tolerance`, lowered while it is healthy.

    metric: "heldout_nll" (negative mean log-likelihood of held-out real points under the current
      model; the source's held-out points if it has them, else n_heldout points drawn once per
      chain from the true distribution, or subsampled from a real data array), another name
      registered with jc.stages.register_feedback_metric, or fn(ctx) -> a loss (lower = better)
      of the current model ctx.params.
    tolerance: how far the loss may rise above generation 0's before the share is raised.
    step_up, step_down: the share's change per generation when degraded / healthy.
    start, low, high: the first share and its bounds, in [0, 1]. All numbers traced, scalar or per chain.
    The real points are the generation-0 real sample (as keep_real): round(share * n_samples) of them.
    """
    name = None
    if isinstance(metric, str):
        if metric not in FEEDBACK_METRICS:
            raise ValueError(f"metric must be {_named()} or a function (ctx) -> loss, got {metric!r}")
        name, metric = metric, FEEDBACK_METRICS[metric]
        if isinstance(metric, type):
            metric = metric(n_heldout=_checks.positive_int("n_heldout", n_heldout))
    if not (hasattr(metric, "init") and callable(metric)):
        if not callable(metric):
            raise ValueError(f"metric must be {_named()} or a function (ctx) -> loss, got {metric!r}")
        metric = FunctionMetric(metric, name or getattr(metric, "__name__", "function"))
    values = dict(tolerance=number("tolerance", tolerance, 0.0, float("inf")),
                  step_up=number("step_up", step_up, 0.0, 1.0), step_down=number("step_down", step_down, 0.0, 1.0),
                  start=number("start", start, 0.0, 1.0), low=number("low", low, 0.0, 1.0),
                  high=number("high", high, 0.0, 1.0))
    if _checks.is_concrete(low) and _checks.is_concrete(high):
        if np.any(np.asarray(low, float) > np.asarray(high, float)):
            raise ValueError(f"low must be <= high, got low={low!r}, high={high!r}")
    return AdaptiveReal(**values, metric=metric, n_heldout=n_heldout)


def _named() -> str:
    """The registered feedback metrics' names: 'heldout_nll' or 'a' or ..."""
    return " or ".join(map(repr, FEEDBACK_METRICS))
