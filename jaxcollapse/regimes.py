"""How generation g's training set is formed from synthetic data, real data and the past.

Every regime keeps static shapes: what varies (how many points are real, which pool
entries are filled) is a weight vector. `fraction` is a traced leaf, so a sweep over it
does not recompile; it may also be an array [n_chains], one fraction per chain, which turns
a sweep into a single vmapped run.

    replace()               train on the n_samples points the previous model generated
    accumulate()            train on all data so far (real + every generation's synthetic)
    accumulate_subsample()  train on a fresh uniform subsample of size n_samples of all data so far
    keep_real(fraction)     that share of each training set is the generation-0 real data,
                            a fixed subset kept all along ("data isolation")
    fresh_real(fraction)    that share is a new real sample every generation
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks

KINDS = ("replace", "accumulate", "accumulate_subsample", "keep_real", "fresh_real")


@dataclasses.dataclass(frozen=True)
class Regime:
    kind: str
    fraction: Any = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"regime kind must be one of {KINDS}, got {self.kind!r}")
        _checks.number_in("fraction", self.fraction, 0.0, 1.0)

    @property
    def needs_real(self) -> bool:
        return self.kind in ("keep_real", "fresh_real")


jax.tree_util.register_dataclass(Regime, data_fields=["fraction"], meta_fields=["kind"])


def replace() -> Regime:
    return Regime("replace")


def accumulate() -> Regime:
    return Regime("accumulate")


def accumulate_subsample() -> Regime:
    return Regime("accumulate_subsample")


def keep_real(fraction) -> Regime:
    return Regime("keep_real", _as_fraction(fraction))


def fresh_real(fraction) -> Regime:
    return Regime("fresh_real", _as_fraction(fraction))


def _as_fraction(fraction):
    if isinstance(fraction, (list, tuple)):
        fraction = np.asarray(fraction, dtype=float)
    _checks.number_in("fraction", fraction, 0.0, 1.0)
    return fraction


class RegimeState(NamedTuple):
    """What a chain carries for its regime; unused fields are None (empty pytrees)."""

    real: Any = None        # [n, ...] generation-0 real sample (keep_real)
    stats: Any = None       # accumulated sufficient statistics (accumulate, stats families)
    pool: Any = None        # [(G + 1) * n, ...] every point so far (pool families)
    pool_count: Any = None  # [] number of filled pool entries


class TrainingSet(NamedTuple):
    """Either weighted points (x, w) or sufficient statistics; the engine fits whichever is set."""

    x: Any = None
    w: Any = None
    stats: Any = None


def uses_pool(regime: Regime, family) -> bool:
    return regime.kind == "accumulate_subsample" or (regime.kind == "accumulate" and not family.has_stats)


def uses_stats(regime: Regime, family) -> bool:
    return regime.kind == "accumulate" and family.has_stats


def pool_bytes(regime: Regime, family, n_chains: int, n_generations: int, n_samples: int) -> int:
    if not uses_pool(regime, family):
        return 0
    per_point = int(np.prod(family.point_shape, dtype=np.int64)) * np.dtype(family.point_dtype).itemsize
    return n_chains * (n_generations + 1) * n_samples * (per_point + 4)  # + the float32 weight


def init_state(regime: Regime, family, real_x, n_generations: int) -> RegimeState:
    """State after generation 0, which was fitted on the real sample `real_x` [n, ...]."""
    n = real_x.shape[0]
    if uses_stats(regime, family):
        return RegimeState(stats=family.stats(real_x, jnp.ones(n, _float())))
    if uses_pool(regime, family):
        pool = jnp.zeros(((n_generations + 1) * n,) + real_x.shape[1:], real_x.dtype)
        pool = jax.lax.dynamic_update_slice_in_dim(pool, real_x, 0, axis=0)
        return RegimeState(pool=pool, pool_count=jnp.asarray(n, jnp.int32))
    if regime.kind == "keep_real":
        return RegimeState(real=real_x)
    return RegimeState()


def training_set(regime: Regime, family, state: RegimeState, key, synthetic, fresh_real=None):
    """(new state, training set) for one generation, given its `synthetic` [n, ...] points."""
    n = synthetic.shape[0]
    ones = jnp.ones(n, _float())
    kind = regime.kind
    if kind == "replace":
        return state, TrainingSet(synthetic, ones)
    if uses_stats(regime, family):
        stats = family.merge_stats(state.stats, family.stats(synthetic, ones))
        return state._replace(stats=stats), TrainingSet(stats=stats)
    if uses_pool(regime, family):
        pool = jax.lax.dynamic_update_slice_in_dim(state.pool, synthetic, state.pool_count, axis=0)
        count = state.pool_count + n
        state = state._replace(pool=pool, pool_count=count)
        filled = jnp.arange(pool.shape[0]) < count
        if kind == "accumulate":
            return state, TrainingSet(pool, filled.astype(_float()))
        # a uniform subsample without replacement: the n filled entries with the smallest random keys
        scores = jnp.where(filled, jax.random.uniform(key, (pool.shape[0],)), jnp.inf)
        _, chosen = jax.lax.top_k(-scores, n)
        return state, TrainingSet(pool[chosen], ones)
    real = state.real if kind == "keep_real" else fresh_real
    n_real = jnp.round(regime.fraction * n)
    index = jnp.arange(n)
    w_real = (index < n_real).astype(_float())
    w_synthetic = (index < n - n_real).astype(_float())
    x = jnp.concatenate([real, synthetic], axis=0)
    return state, TrainingSet(x, jnp.concatenate([w_real, w_synthetic]))


def _float():
    return jnp.result_type(float)
