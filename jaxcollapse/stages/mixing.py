"""The five mixing regimes: how synthetic data, real data and the past form a training set.

    replace()               train on the points the previous model generated
    accumulate()            train on all data so far (real + every generation's synthetic)
    accumulate_subsample()  train on a fresh uniform subsample of size n_samples of all data so far
    keep_real(fraction)     that share of each training set is the generation-0 real data,
                            a fixed subset kept all along ("data isolation")
    fresh_real(fraction)    that share is a new real sample every generation

The real share is round(fraction * n_samples) points, rounding half to even (numpy's rule); a
fraction in (0, 1) that rounds to no real point, or to all of them, is refused. fresh_real with
a real data array as the source draws each generation's share without replacement from that
same finite array, so generations may reuse points; for disjoint draws, pass a pool at least
n_generations * share points large and subsample it yourself, or use a parametric source.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import types
from jaxcollapse.families.base import has_sufficient_stats, point_struct
from jaxcollapse.stages.base import number, stage
from jaxcollapse.stages.registry import register_stage


class NoState(NamedTuple):
    pass


class RealState(NamedTuple):
    real: Any          # the generation-0 real sample [n, ...]


class StatsState(NamedTuple):
    stats: Any         # sufficient statistics of all data so far


class PoolState(NamedTuple):
    x: Any             # [(n_generations + 1) * n, ...] every point so far
    w: Any             # [(n_generations + 1) * n] their weights (0 = empty slot or dropped point)
    count: Any         # [] filled slots


@stage
class Replace:
    name = "replace"

    def init(self, real, ctx):
        return NoState()

    def update(self, key, state, batch, ctx):
        return state, batch


def _pool_init(real, ctx) -> PoolState:
    n = types.n_points(real)
    size = (ctx.n_generations + 1) * n
    x = jax.tree_util.tree_map(lambda a: jax.lax.dynamic_update_slice_in_dim(
        jnp.zeros((size,) + a.shape[1:], a.dtype), a, 0, axis=0), real)
    w = jnp.zeros(size, jnp.result_type(float)).at[:n].set(1.0)
    return PoolState(x, w, jnp.asarray(n, jnp.int32))


def _pool_add(state: PoolState, batch) -> PoolState:
    n = types.n_points(batch.x)
    if state.w.shape[0] % n:
        raise ValueError(f"a pooling stage needs batches of n_samples points, got {n}")
    x = jax.tree_util.tree_map(lambda p, b: jax.lax.dynamic_update_slice_in_dim(p, b, state.count, axis=0),
                               state.x, batch.x)
    w = jax.lax.dynamic_update_slice_in_dim(state.w, batch.w.astype(state.w.dtype), state.count, axis=0)
    return PoolState(x, w, state.count + n)


def _pool_bytes(family, n_chains, n_generations, n_samples) -> int:
    per_point = sum(int(np.prod(s.shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize
                    for s in jax.tree_util.tree_leaves(point_struct(family)))
    return n_chains * (n_generations + 1) * n_samples * (per_point + 4)  # + the float32 weight


@stage
class Accumulate:
    """All data so far: sufficient statistics where the family has them (O(1) memory), else a pool."""

    name = "accumulate"

    def init(self, real, ctx):
        if has_sufficient_stats(ctx.family):
            return StatsState(ctx.family.stats(real, types.weights(types.n_points(real))))
        return _pool_init(real, ctx)

    def update(self, key, state, batch, ctx):
        if isinstance(state, StatsState):
            stats = ctx.family.merge_stats(state.stats, ctx.family.stats(batch.x, batch.w))
            return StatsState(stats), types.TrainingSet(stats=stats)
        state = _pool_add(state, batch)
        return state, types.TrainingSet(state.x, state.w)

    def pool_bytes(self, family, n_chains, n_generations, n_samples) -> int:
        return 0 if has_sufficient_stats(family) else _pool_bytes(family, n_chains, n_generations, n_samples)


@stage
class AccumulateSubsample:
    """A fresh uniform subsample (without replacement) of n_samples points of all data so far."""

    name = "accumulate_subsample"

    def init(self, real, ctx):
        return _pool_init(real, ctx)

    def update(self, key, state, batch, ctx):
        state = _pool_add(state, batch)
        n = types.n_points(batch.x)
        # the n kept entries with the smallest random keys
        scores = jnp.where(state.w > 0, jax.random.uniform(key, state.w.shape), jnp.inf)
        _, chosen = jax.lax.top_k(-scores, n)
        return state, types.TrainingSet(types.take(state.x, chosen), state.w[chosen])

    def pool_bytes(self, family, n_chains, n_generations, n_samples) -> int:
        return _pool_bytes(family, n_chains, n_generations, n_samples)


def _mix(fraction, real, batch):
    """round(fraction * n) real points first, then the first n - that many synthetic ones."""
    n = types.n_points(batch.x)
    n_real = jnp.round(fraction * n)
    index = jnp.arange(n)
    dtype = jnp.result_type(float)
    w_real = (index < n_real).astype(dtype)
    w_synthetic = (index < n - n_real).astype(dtype) * batch.w
    return types.TrainingSet(types.concat(real, batch.x), jnp.concatenate([w_real, w_synthetic]))


def _check_share(fraction, n_samples: int) -> None:
    values = np.atleast_1d(np.asarray(fraction, dtype=float))
    n_real = np.round(values * n_samples)
    bad = ((values > 0) & (n_real == 0)) | ((values < 1) & (n_real == n_samples))
    if np.any(bad):
        f = values[bad][0]
        raise ValueError(f"fraction {f:g} with n_samples={n_samples} gives round({f:g} * {n_samples}) = "
                         f"{int(np.round(f * n_samples))} real points; use 0, 1, or a fraction giving between "
                         f"1 and {n_samples - 1} real points")


@stage
class KeepReal:
    """A fixed share of every training set is the generation-0 real sample ("data isolation")."""

    fraction: Any = dataclasses.field(metadata={"toml": "share"})
    name = "keep_real"

    def init(self, real, ctx):
        return RealState(real)

    def update(self, key, state, batch, ctx):
        return state, _mix(self.fraction, state.real, batch)

    def check(self, n_samples: int) -> None:
        _check_share(self.fraction, n_samples)


@stage
class FreshReal:
    """A share of every training set is a new real sample (ctx.draw_real)."""

    fraction: Any = dataclasses.field(metadata={"toml": "share"})
    name = "fresh_real"

    def init(self, real, ctx):
        return NoState()

    def update(self, key, state, batch, ctx):
        return state, _mix(self.fraction, ctx.draw_real(types.n_points(batch.x)), batch)

    def check(self, n_samples: int) -> None:
        _check_share(self.fraction, n_samples)


@register_stage("replace")
def replace() -> Replace:
    """Train each generation on the previous model's samples only."""
    return Replace()


@register_stage("accumulate")
def accumulate() -> Accumulate:
    """Train on all data so far."""
    return Accumulate()


@register_stage("accumulate_subsample")
def accumulate_subsample() -> AccumulateSubsample:
    """Train on a uniform subsample of size n_samples of all data so far."""
    return AccumulateSubsample()


@register_stage("keep_real")
def keep_real(fraction) -> KeepReal:
    """A share `fraction` (scalar, or one per chain) of every training set is the generation-0 real data."""
    return KeepReal(number("fraction", fraction, 0.0, 1.0))


@register_stage("fresh_real")
def fresh_real(fraction) -> FreshReal:
    """A share `fraction` (scalar, or one per chain) of every training set is a fresh real sample."""
    return FreshReal(number("fraction", fraction, 0.0, 1.0))
