"""Multivariate normal: closed-form fit (MLE ddof=0 or unbiased ddof=1), optional sampling bias.

A chain carries its model as GaussianModel (mean, a unit lower-triangular factor, log-scales; see
log_cholesky.py), so it follows collapse past float32's range: the training points a model
generated are fitted in that model's own coordinates (fit_local: standard draws, whose sample
covariance's Cholesky factor T refits L <- L T), exact at any scale. Training sets that mix in
other points (real data, pools of past generations) are fitted in the user's coordinates; real
data keeps those models at its own scale, where float32 is exact to rounding. What a run records
is GaussianParams(mean, cov); cov may underflow to 0 for a deeply collapsed chain, while the
metrics log_var, log_det_cov and kl_to_source come from the log-scales.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks, metrics
from jaxcollapse.families import log_cholesky
from jaxcollapse.families.base import FamilyBase, closed_form_info, family, register, wrong_params
from jaxcollapse.families.standard_normal import standard_normal
from jaxcollapse.types import FitInfo, Source


class GaussianParams(NamedTuple):
    """A Gaussian as users give and read it: the source (make_params) and what a run records."""

    mean: jax.Array  # [d]
    cov: jax.Array   # [d, d]


class GaussianModel(NamedTuple):
    """A Gaussian as a chain carries it: Sigma = L L^T, L = unit_chol diag(exp(log_diag)).

    A degenerate direction has log_diag = -inf (the fit's `finite` flag is then False).
    """

    mean: jax.Array       # [d]
    unit_chol: jax.Array  # [d, d] unit lower-triangular
    log_diag: jax.Array   # [d] log of the Cholesky factor's diagonal

    @property
    def cov(self) -> jax.Array:
        """The covariance as a float matrix (underflows to 0 for deep collapse)."""
        return log_cholesky.covariance(self.unit_chol, self.log_diag)


class GaussianStats(NamedTuple):
    """Weighted count, mean and scatter matrix; merged with Chan's update (stable in float32)."""

    count: jax.Array    # []
    mean: jax.Array     # [d]
    scatter: jax.Array  # [d, d]  sum_i w_i (x_i - mean)(x_i - mean)^T


def _weighted_moments(x, w, count):
    """Weighted mean [d] and scatter sum_i w_i (x_i - mean)(x_i - mean)^T [d, d] of points x [n, d].

    In one dimension on the points' own axis: vmapped [n, 1] broadcasts are slow on XLA:CPU
    (benchmarks/RESULTS.md, "jax 0.12 and the 1-D Gaussian"). The mean stays an einsum: as x^T w its
    last bits would depend on how many chains share a device, and sharded runs must equal one-device runs.
    """
    if x.shape[-1] == 1:
        x1 = x[:, 0]
        mean = jnp.sum(w * x1) / jnp.maximum(count, 1e-30)
        centred = x1 - mean
        return mean[None], jnp.sum(w * centred * centred)[None, None]
    mean = jnp.einsum("n,nd->d", w, x) / jnp.maximum(count, 1e-30)
    centred = x - mean
    return mean, jnp.einsum("n,nd,ne->de", w, centred, centred)


@register("gaussian")
@family(static=("dim", "ddof"))
class Gaussian(FamilyBase):
    """N(mean, cov) in `dim` dimensions.

    ddof: 0 fits the MLE covariance, 1 the unbiased one.
    lam: sampling bias; a trained model generates from N(mean, lam * cov) ("Go MAD").
    reg_covar: added to the fitted covariance's diagonal (a floor; 0 keeps fits exact).

    Metrics: log_det_cov and log_var = log(tr cov / dim) (log sigma^2 in one dimension), exact at
    any depth of collapse; kl_to_source = KL(source || model) (+inf past float32's largest number,
    and for a degenerate model); w2_to_source.
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
    def model(self, params) -> GaussianModel:
        """The carried form of params (GaussianParams are factored; a GaussianModel is returned as is)."""
        if isinstance(params, GaussianModel):
            return params
        return GaussianModel(params.mean, *log_cholesky.factor(params.cov))

    def record_params(self, params) -> GaussianParams:
        """What a run records per generation: mean and covariance (the engine's record hook)."""
        model = self.model(params)
        return GaussianParams(model.mean, model.cov)

    def _points(self, model: GaussianModel, local, scale=1.0) -> jax.Array:
        """User coordinates of points given in the model's own coordinates: mean + scale L local."""
        low = log_cholesky.matrix(model.unit_chol, model.log_diag + 0.5 * jnp.log(scale))  # [d, d], not [n, d]
        if self.dim == 1:  # a scale, not a matrix product (see _weighted_moments)
            return model.mean + low[0, 0] * local
        return model.mean + jnp.squeeze(jnp.matmul(low, local[..., None]), -1)  # as numpyro: faster under vmap on CPU

    def sample(self, key, params, n: int) -> jax.Array:
        model = self.model(params)
        return self._points(model, standard_normal(key, (n, self.dim), model.mean.dtype))

    def generate(self, key, params, n: int, source: Source | None = None) -> jax.Array:
        return self.generate_local(key, params, n, source)[0]

    def generate_local(self, key, params, n: int, source: Source | None = None):
        """(points, their standard draws z): N(mean, lam cov) draws x = mean + sqrt(lam) L z.

        fit_local takes z back (the sampling bias lam included there). Hand-written rather than
        numpyro's MultivariateNormal: its scale_tril would underflow.
        """
        model = self.model(params)
        local = standard_normal(key, (n, self.dim), model.mean.dtype)
        return self._points(model, local, self.lam), local

    def log_prob(self, params, x) -> jax.Array:
        """log N(x; mean, cov) from the factor (-inf everywhere for a degenerate model: it has no density)."""
        model = self.model(params)
        degenerate = ~jnp.all(jnp.isfinite(model.log_diag))
        log_diag = jnp.where(degenerate, 0.0, model.log_diag)
        if self.dim == 1:  # on the points' own axis, no [1, n] solve (see _weighted_moments)
            z = (x[..., 0] - model.mean[0]) * jnp.exp(-log_diag[0])
            quad = z * z
        else:
            solved = log_cholesky.solve_unit(model.unit_chol, (x - model.mean).T)   # [d, n] = U^-1 (x - mean)
            quad = jnp.sum((solved * jnp.exp(-log_diag)[:, None]) ** 2, axis=0)
        out = -0.5 * quad - jnp.sum(log_diag) - 0.5 * self.dim * math.log(2 * math.pi)
        return jnp.where(degenerate, -jnp.inf, out)

    def stats(self, x, w) -> GaussianStats:
        count = jnp.sum(w)
        mean, scatter = _weighted_moments(x, w, count)
        return GaussianStats(count, mean, scatter)

    def merge_stats(self, a: GaussianStats, b: GaussianStats) -> GaussianStats:
        count = a.count + b.count
        delta = b.mean - a.mean
        frac_b = b.count / jnp.maximum(count, 1e-30)
        mean = a.mean + delta * frac_b
        scatter = a.scatter + b.scatter + jnp.outer(delta, delta) * a.count * frac_b
        return GaussianStats(count, mean, scatter)

    def _covariance(self, scatter, count):
        cov = scatter / (count - self.ddof)
        return 0.5 * (cov + cov.T) + self.reg_covar * jnp.eye(self.dim, dtype=cov.dtype)

    def fit_stats(self, stats: GaussianStats, rank=None) -> tuple[GaussianModel, FitInfo]:
        model = GaussianModel(stats.mean, *log_cholesky.factor(self._covariance(stats.scatter, stats.count), rank))
        return model, closed_form_info(model)

    def fit(self, key, x, w, init=None) -> tuple[GaussianModel, FitInfo]:
        """Fit points in the user's coordinates (real data, mixed or pooled training sets)."""
        del key, init  # closed form
        return self.fit_stats(self.stats(x, w), self._spanned(w))

    def _spanned(self, w):
        """How many directions the points with weight > 0 can span (a floor spans them all)."""
        return jnp.where(self.reg_covar > 0, self.dim, jnp.sum(w > 0) - 1)

    def fit_local(self, key, local, w, init) -> tuple[GaussianModel, FitInfo]:
        """Fit the points init generated, given as their standard draws z (x = mean + sqrt(lam) L z).

        Exact however far init has collapsed: in its own coordinates the sample has mean m and
        covariance S = T T^T of order one; the new model is mean + sqrt(lam) L m and sqrt(lam) L T,
        with log det carried exactly. reg_covar, a floor in the user's coordinates, is added there
        (the model then never shrinks below it).
        """
        del key
        init = self.model(init)
        count = jnp.sum(w)
        local_mean, scatter = _weighted_moments(local, w, count)
        cov = scatter / (count - self.ddof)
        generating = init.log_diag + 0.5 * jnp.log(self.lam)   # log-scales of sqrt(lam) L
        mean = init.mean + log_cholesky.matrix(init.unit_chol, generating) @ local_mean
        t = log_cholesky.cholesky(0.5 * (cov + cov.T), jnp.sum(w > 0) - 1)

        def exact(_):
            return GaussianModel(mean, *log_cholesky.compose(init.unit_chol, generating, t))

        def floored(_):  # the floor lives in the user's coordinates: form the covariance there
            low = log_cholesky.matrix(init.unit_chol, generating) @ t
            floor = self.reg_covar * jnp.eye(self.dim, dtype=mean.dtype)
            return GaussianModel(mean, *log_cholesky.factor(low @ low.T + floor))

        model = jax.lax.cond(self.reg_covar > 0, floored, exact, None)
        return model, closed_form_info(model)

    def metrics(self, key, params, source: Source) -> dict:
        del key  # closed forms
        model = self.model(params)
        out = {"log_det_cov": log_cholesky.log_det(model.log_diag),
               "log_var": log_cholesky.log_mean_var(model.unit_chol, model.log_diag)}
        if source.params is not None:
            out["w2_to_source"] = metrics.gaussian_w2(self.record_params(model), source.params)
            out["kl_to_source"] = metrics.gaussian_kl_to_model(source.params, model)
        return out
