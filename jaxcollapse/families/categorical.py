"""Categorical distribution over n_states, fitted by (weighted) empirical frequencies: the dice."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from jaxcollapse import _checks
from jaxcollapse.families.base import FamilyBase, closed_form_info, family, register, wrong_params
from jaxcollapse.families.categorical_study import CategoricalStudy
from jaxcollapse.types import FitInfo, Source


class CategoricalParams(NamedTuple):
    probs: jax.Array  # [S]


@register("categorical")
@family(static=("n_states",))
class Categorical(CategoricalStudy, FamilyBase):
    """A die with `n_states` faces; points are integer states in [0, n_states)."""

    n_states: int

    has_stats = True
    heldout_size = 0

    def __post_init__(self):
        _checks.positive_int("n_states", self.n_states, minimum=2)

    @property
    def point_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def point_dtype(self):
        return jnp.int32

    def make_params(self, probs) -> CategoricalParams:
        probs = _checks.probability_vector("probs", probs, self.n_states)
        return CategoricalParams(jnp.asarray(probs, jnp.result_type(float)))

    def check_params(self, params) -> CategoricalParams:
        if not isinstance(params, CategoricalParams):
            raise wrong_params(self, params, CategoricalParams)
        return self.make_params(params.probs)

    def check_data(self, name: str, data):
        data = _checks.finite_array(name, data, ndim=1)
        if not (jnp.issubdtype(data.dtype, jnp.integer) and data.min() >= 0 and data.max() < self.n_states):
            raise ValueError(f"{name} must be CategoricalParams or an integer array of states in [0, {self.n_states})")
        return jnp.asarray(data, jnp.int32)

    def check_settings(self, n_samples: int) -> None:
        del n_samples

    def sample(self, key, params: CategoricalParams, n: int) -> jax.Array:
        return dist.Categorical(probs=params.probs).sample(key, (n,)).astype(jnp.int32)

    def generate(self, key, params: CategoricalParams, n: int, source: Source | None = None) -> jax.Array:
        return self.sample(key, params, n)

    def log_prob(self, params: CategoricalParams, x) -> jax.Array:
        return dist.Categorical(probs=params.probs).log_prob(x)

    def stats(self, x, w) -> jax.Array:
        return jnp.zeros(self.n_states, jnp.result_type(float)).at[x].add(w)

    def merge_stats(self, a, b):
        return a + b

    def fit_stats(self, counts) -> tuple[CategoricalParams, FitInfo]:
        params = CategoricalParams(counts / jnp.sum(counts))
        return params, closed_form_info(params)

    def fit(self, key, x, w, init=None) -> tuple[CategoricalParams, FitInfo]:
        del key, init
        return self.fit_stats(self.stats(x, w))

    def metrics(self, key, params: CategoricalParams, source: Source) -> dict:
        from jaxcollapse import metrics

        del key  # closed forms
        out = {
            "entropy": metrics.entropy(params.probs),
            "support_size": jnp.sum(params.probs > 0).astype(jnp.int32),
        }
        if source.params is not None:
            out["tv_to_source"] = metrics.total_variation(params.probs, source.params.probs)
        return out
