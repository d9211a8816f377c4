"""Categorical distribution over n_states, fitted by (weighted) empirical frequencies: the dice."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from jaxcollapse import _checks, metrics
from jaxcollapse.families.base import FamilyBase, closed_form_info, family, register, wrong_params
from jaxcollapse.types import FitInfo, Source


class CategoricalParams(NamedTuple):
    probs: jax.Array  # [S]


@register("categorical")
@family(static=("n_states",))
class Categorical(FamilyBase):
    """A die with `n_states` faces; points are integer states in [0, n_states).

    Sampler settings, applied by generate() (what a trained model emits; sample() stays exact),
    in this order, as a language model's decoder does: temperature (q ~ p^(1 / temperature)),
    top_k (keep the top_k most likely states, 0 = all; ties go to the lower state), top_p (keep
    the fewest most likely states whose mass reaches top_p), then renormalise. All three are
    traced: a new value reuses the compiled program. The defaults emit exactly p.
    """

    n_states: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    has_stats = True
    heldout_size = 0

    def __post_init__(self):
        _checks.positive_int("n_states", self.n_states, minimum=2)
        _checks.number_in("temperature", self.temperature, 0.0, float("inf"), low_open=True)
        _checks.number_in("top_p", self.top_p, 0.0, 1.0, low_open=True)
        if _checks.is_concrete(self.top_k):
            top_k = self.top_k
            if isinstance(top_k, bool) or int(top_k) != top_k or not 0 <= top_k <= self.n_states:
                raise ValueError(f"top_k must be an integer in [0, {self.n_states}] (0 = no truncation), got {top_k!r}")

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
        return self.sample(key, CategoricalParams(self.sampling_probs(params.probs)), n)

    def sampling_probs(self, probs) -> jax.Array:
        """The distribution generate() draws from: p after temperature, top_k and top_p (exactly p by default)."""
        dtype = probs.dtype
        logits = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf) / self.temperature
        q = jax.nn.softmax(logits)
        order = jnp.argsort(-q, stable=True)                       # most likely first, ties to the lower state
        rank = jnp.zeros(self.n_states, jnp.int32).at[order].set(jnp.arange(self.n_states, dtype=jnp.int32))
        q = jnp.where((self.top_k == 0) | (rank < self.top_k), q, 0.0)
        q = q / jnp.sum(q)
        before = (jnp.cumsum(q[order]) - q[order])[rank]            # mass of the states ranked above each one
        q = jnp.where((before < self.top_p) | (self.top_p >= 1.0), q, 0.0)
        q = (q / jnp.sum(q)).astype(dtype)
        default = (self.temperature == 1.0) & (self.top_k == 0) & (self.top_p == 1.0)
        return jnp.where(default, probs, q)

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
        del key  # closed forms
        out = {
            "entropy": metrics.entropy(params.probs),
            "support_size": jnp.sum(params.probs > 0).astype(jnp.int32),
        }
        if source.params is not None:
            out["tv_to_source"] = metrics.total_variation(params.probs, source.params.probs)
        return out
