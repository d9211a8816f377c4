"""Multivariate normal: closed-form fit (MLE ddof=0 or unbiased ddof=1), optional sampling bias."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from jaxcollapse import _checks
from jaxcollapse.families.base import FamilyBase, closed_form_info, family, register, wrong_params
from jaxcollapse.families.gaussian_study import GaussianStudy
from jaxcollapse.types import FitInfo, Source


class GaussianParams(NamedTuple):
    mean: jax.Array  # [d]
    cov: jax.Array   # [d, d]


class GaussianStats(NamedTuple):
    """Weighted count, mean and scatter matrix; merged with Chan's update (stable in float32)."""

    count: jax.Array    # []
    mean: jax.Array     # [d]
    scatter: jax.Array  # [d, d]  sum_i w_i (x_i - mean)(x_i - mean)^T


@register("gaussian")
@family(static=("dim", "ddof"))
class Gaussian(GaussianStudy, FamilyBase):
    """N(mean, cov) in `dim` dimensions.

    ddof: 0 fits the MLE covariance, 1 the unbiased one.
    lam: sampling bias; a trained model generates from N(mean, lam * cov) ("Go MAD").
    reg_covar: added to the fitted covariance's diagonal (a floor; 0 keeps fits exact).
    """

    dim: int
    ddof: int = 1
    lam: float = 1.0
    reg_covar: float = 0.0

    has_stats = True
    heldout_size = 0

    def __post_init__(self):
        _checks.positive_int("dim", self.dim)
        if self.ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 (MLE) or 1 (unbiased), got {self.ddof!r}")
        _checks.number_in("lam", self.lam, 0.0, np.inf, low_open=True)
        _checks.number_in("reg_covar", self.reg_covar, 0.0, np.inf)

    @property
    def point_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    @property
    def point_dtype(self):
        return jnp.result_type(float)

    # ---- host-side -------------------------------------------------------------------
    def make_params(self, mean, cov) -> GaussianParams:
        mean = _checks.finite_array("mean", mean, shape=(self.dim,))
        cov = _checks.spd_matrix("cov", cov, self.dim)
        dtype = self.point_dtype
        return GaussianParams(jnp.asarray(mean, dtype), jnp.asarray(cov, dtype))

    def check_params(self, params) -> GaussianParams:
        if not isinstance(params, GaussianParams):
            raise wrong_params(self, params, GaussianParams)
        return self.make_params(params.mean, params.cov)

    def check_data(self, name: str, data):
        data = _checks.finite_array(name, data, ndim=2)
        if data.shape[1] != self.dim:
            raise ValueError(f"{name} must be GaussianParams or a data array [n, {self.dim}], got shape {data.shape}")
        return jnp.asarray(data, self.point_dtype)

    def check_settings(self, n_samples: int) -> None:
        if self.ddof == 1 and n_samples < 2:
            raise ValueError(f"n_samples must be >= 2 with ddof=1 (unbiased covariance), got {n_samples}")

    # ---- pure, one chain ---------------------------------------------------------------
    def distribution(self, params: GaussianParams, scale=1.0) -> dist.MultivariateNormal:
        return dist.MultivariateNormal(params.mean, covariance_matrix=scale * params.cov)

    def sample(self, key, params: GaussianParams, n: int) -> jax.Array:
        return self.distribution(params).sample(key, (n,))

    def generate(self, key, params: GaussianParams, n: int, source: Source | None = None) -> jax.Array:
        return self.distribution(params, self.lam).sample(key, (n,))

    def log_prob(self, params: GaussianParams, x) -> jax.Array:
        return self.distribution(params).log_prob(x)

    def stats(self, x, w) -> GaussianStats:
        count = jnp.sum(w)
        mean = jnp.einsum("n,nd->d", w, x) / jnp.maximum(count, 1e-30)
        centred = x - mean
        scatter = jnp.einsum("n,nd,ne->de", w, centred, centred)
        return GaussianStats(count, mean, scatter)

    def merge_stats(self, a: GaussianStats, b: GaussianStats) -> GaussianStats:
        count = a.count + b.count
        delta = b.mean - a.mean
        frac_b = b.count / jnp.maximum(count, 1e-30)
        mean = a.mean + delta * frac_b
        scatter = a.scatter + b.scatter + jnp.outer(delta, delta) * a.count * frac_b
        return GaussianStats(count, mean, scatter)

    def fit_stats(self, stats: GaussianStats) -> tuple[GaussianParams, FitInfo]:
        cov = stats.scatter / (stats.count - self.ddof)
        cov = 0.5 * (cov + cov.T) + self.reg_covar * jnp.eye(self.dim, dtype=cov.dtype)
        params = GaussianParams(stats.mean, cov)
        return params, closed_form_info(params)

    def fit(self, key, x, w, init=None) -> tuple[GaussianParams, FitInfo]:
        del key, init  # closed form
        return self.fit_stats(self.stats(x, w))

    def metrics(self, key, params: GaussianParams, source: Source) -> dict:
        from jaxcollapse import metrics

        del key  # closed forms
        out = {"log_det_cov": metrics.log_det_spd(params.cov)}
        if source.params is not None:
            out["w2_to_source"] = metrics.gaussian_w2(params, source.params)
            out["kl_to_source"] = metrics.gaussian_kl(source.params, params)
        return out
