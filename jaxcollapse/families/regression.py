"""Linear regression: points are (x, y) pairs, the model is w, a trained model labels covariates.

Generation g + 1 is fitted on labels y = x . w_g + N(0, noise_std^2) made by generation g, either
on the same design X every generation of a chain ("fixed", Gerstgrasser et al. 2024, drawn once
per chain in chain_source) or on fresh covariates from the source ("random", Dohmatob, Feng and
Kempe 2024). The fit is OLS (ridge = 0) or ridge on the sufficient statistics X^T W X and X^T W y,
so accumulate keeps O(d^2) numbers per chain.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks
from jaxcollapse.families.base import FamilyBase, closed_form_info, family, register, wrong_params
from jaxcollapse.types import FitInfo, Source

DESIGNS = ("fixed", "random")


class RegressionParams(NamedTuple):
    """A fitted linear model y = x . w (no intercept, as in the papers)."""

    w: jax.Array  # [d]


class RegressionSource(NamedTuple):
    """The true relation: x ~ N(0, cov), y = x . w + N(0, noise_std^2).

    synthetic_shift, synthetic_share: a share p of every real sample's labels comes from the shifted
        model w + synthetic_shift (Strong Model Collapse: the "real" corpus already holds synthetic
        data); round(p n) of n rows, the last ones. Metrics still score against w.
    design: a chain's fixed design [T, d] (set per chain by chain_source), or None.
    """

    w: jax.Array                 # [d]
    cov: jax.Array               # [d, d]
    noise_std: jax.Array         # []
    synthetic_shift: jax.Array   # [d]
    synthetic_share: jax.Array   # []
    design: Any = None           # [T, d] or None


class RegressionStats(NamedTuple):
    xtx: jax.Array    # [d, d]  sum_i w_i x_i x_i^T
    xty: jax.Array    # [d]     sum_i w_i x_i y_i
    count: jax.Array  # []      sum_i w_i


@register("linear_regression")
@family(static=("dim", "design"))
class LinearRegression(FamilyBase):
    """y = x . w + noise in `dim` dimensions, refitted on its own labels.

    noise_std: the noise a trained model adds to the labels it makes (sigma_0 of Dohmatob et al.);
        the real labels' noise is the source's noise_std (by default the same).
    ridge: minimises ||y - X w||^2 + ridge ||w||^2 (scikit-learn's alpha); 0 is OLS.
    design: "fixed": each chain draws its T = n_samples covariates once and every generation labels
        them anew; "random": every generation labels fresh covariates from the source.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> fam = LinearRegression(dim=2, noise_std=1.0)
      >>> src = fam.make_params(w=[1.0, -1.0])
      >>> x, y = fam.sample(jax.random.key(0), src, 50)
      >>> params, info = fam.fit(jax.random.key(1), (x, y), jnp.ones(50), None)
      >>> params.w.shape
      (2,)
    """

    dim: int
    noise_std: float
    ridge: float = 0.0
    design: str = "fixed"

    has_stats = True
    heldout_size = 0

    def __post_init__(self):
        _checks.positive_int("dim", self.dim)
        for name in ("noise_std", "ridge"):
            value = getattr(self, name)
            if _checks.is_concrete(value) and np.ndim(value) != 0:  # one model per family: a sweep is a grid
                raise ValueError(f"{name} must be one number >= 0.0, got an array of shape {np.shape(value)}")
            _checks.number_in(name, value, 0.0, np.inf)
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, got {self.design!r}")

    @property
    def point_struct(self):
        dtype = jnp.result_type(float)
        return (jax.ShapeDtypeStruct((self.dim,), dtype), jax.ShapeDtypeStruct((), dtype))

    # ---- host-side -------------------------------------------------------------------
    def make_params(self, w, cov=None, noise_std=None, synthetic_shift=None, synthetic_share=0.0,
                    design=None) -> RegressionSource:
        """The true relation (defaults: cov = I, the family's noise_std, no synthetic share)."""
        d, dtype = self.dim, jnp.result_type(float)
        w = _checks.finite_array("w", w, shape=(d,))
        cov = np.eye(d) if cov is None else _checks.spd_matrix("cov", cov, d)
        noise_std = self.noise_std if noise_std is None else noise_std
        _checks.number_in("noise_std", noise_std, 0.0, np.inf)
        shift = np.zeros(d) if synthetic_shift is None else _checks.finite_array(
            "synthetic_shift", synthetic_shift, shape=(d,))
        _checks.number_in("synthetic_share", synthetic_share, 0.0, 1.0)
        if design is not None:
            design = _checks.finite_array("design", design, ndim=2)
            if design.shape[1] != d:
                raise ValueError(f"design must have shape [n_samples, {d}], got {design.shape}")
            design = jnp.asarray(design, dtype)
        return RegressionSource(jnp.asarray(w, dtype), jnp.asarray(cov, dtype), jnp.asarray(noise_std, dtype),
                                jnp.asarray(shift, dtype), jnp.asarray(synthetic_share, dtype), design)

    def check_params(self, params) -> RegressionSource:
        if not isinstance(params, RegressionSource):
            raise wrong_params(self, params, RegressionSource)
        try:
            return self.make_params(*params)
        except ValueError as err:
            raise ValueError(f"source {err} (LinearRegression(dim={self.dim}))") from None

    def check_data(self, name: str, data):
        raise ValueError(f"{name}: LinearRegression needs a parametric source (family.make_params(w=...)), whose "
                         "w and covariate law the metrics score against; real (x, y) data arrays are not supported")

    def check_settings(self, n_samples: int) -> None:
        if _checks.is_concrete(self.ridge) and float(self.ridge) == 0.0 and n_samples < self.dim:
            raise ValueError(f"n_samples must be >= dim ({self.dim}) for OLS (ridge = 0): X^T X of {n_samples} "
                             f"rows is singular; got {n_samples} (or set ridge > 0)")

    # ---- pure, one chain ---------------------------------------------------------------
    def chain_source(self, key, source: Source, n_samples: int) -> Source:
        """A fixed design draws the chain's n_samples covariates once (unless the source gives one)."""
        source = super().chain_source(key, source, n_samples)
        params = source.params
        if params is not None and params.design is not None and params.design.shape[0] != n_samples:
            # shapes are static: this runs while tracing, before anything compiles
            raise ValueError(f"source design must have n_samples = {n_samples} rows (the T rows every generation "
                             f"labels), got {params.design.shape[0]}")
        if self.design != "fixed" or params is None or params.design is not None:
            return source
        return source._replace(params=params._replace(design=_covariates(key, params.cov, n_samples)))

    def sample(self, key, params: RegressionSource, n: int):
        """n real (x, y) pairs: the chain's design rows (cycled) when it has one, else fresh covariates."""
        k_x, k_noise = jax.random.split(key)
        x = _design_rows(params.design, n) if params.design is not None else _covariates(k_x, params.cov, n)
        shifted = jnp.arange(n) >= n - jnp.round(params.synthetic_share * n)
        w = params.w + shifted[:, None] * params.synthetic_shift
        y = jnp.sum(x * w, axis=-1) + params.noise_std * jax.random.normal(k_noise, (n,), x.dtype)
        return x, y

    def generate(self, key, params: RegressionParams, n: int, source: Source):
        """Labels from the trained model: on the chain's design ("fixed") or fresh covariates ("random")."""
        k_x, k_noise = jax.random.split(key)
        truth = source.params
        if self.design == "fixed":
            if truth is None or truth.design is None:
                raise ValueError("design='fixed' needs the chain's design: run through jc.simulate, or pass "
                                 "source=family.chain_source(key, source, n_samples)")
            x = _design_rows(truth.design, n)
        else:
            x = _covariates(k_x, truth.cov, n)
        y = x @ params.w + self.noise_std * jax.random.normal(k_noise, (n,), x.dtype)
        return x, y

    def log_prob(self, params: RegressionParams, points) -> jax.Array:
        """log p(y | x) under the model's label noise."""
        x, y = points
        var = jnp.asarray(self.noise_std, x.dtype) ** 2
        return -0.5 * ((y - x @ params.w) ** 2 / var + jnp.log(2 * jnp.pi * var))

    def stats(self, points, w) -> RegressionStats:
        x, y = points
        return RegressionStats(jnp.einsum("n,nd,ne->de", w, x, x), jnp.einsum("n,nd,n->d", w, x, y), jnp.sum(w))

    def merge_stats(self, a: RegressionStats, b: RegressionStats) -> RegressionStats:
        return RegressionStats(a.xtx + b.xtx, a.xty + b.xty, a.count + b.count)

    def fit_stats(self, stats: RegressionStats) -> tuple[RegressionParams, FitInfo]:
        gram = stats.xtx + self.ridge * jnp.eye(self.dim, dtype=stats.xtx.dtype)
        chol = jnp.linalg.cholesky(0.5 * (gram + gram.T))
        w = jax.scipy.linalg.cho_solve((chol, True), stats.xty)
        params = RegressionParams(w)
        return params, closed_form_info(params)

    def fit(self, key, x, w, init=None) -> tuple[RegressionParams, FitInfo]:
        del key, init  # closed form
        return self.fit_stats(self.stats(x, w))

    def metrics(self, key, params: RegressionParams, source: Source) -> dict:
        """param_error ||w - w*||^2 and excess_risk ||w - w*||^2_Sigma = E_x (x . w - x . w*)^2."""
        del key  # closed forms
        truth = source.params
        error = params.w - truth.w
        return {"param_error": jnp.sum(error ** 2), "excess_risk": error @ truth.cov @ error}


def _covariates(key, cov, n: int):
    chol = jnp.linalg.cholesky(cov)
    return jax.random.normal(key, (n, cov.shape[-1]), cov.dtype) @ chol.T


def _design_rows(design, n: int):
    rows = design.shape[0]
    return design if n == rows else design[np.arange(n) % rows]
