"""Gaussian kernel density estimate: the model is its weighted training points and the bandwidth.

Sampling picks a point (with its weight) and adds N(0, h^2 I). The params hold every row of the
training set it was fitted on (weight 0 = not in it), so their shape is the training set's: n
points under replace and accumulate_subsample, 2n under keep_real / fresh_real, (G + 1) n under
accumulate (the engine grows generation 0's params to that shape with resize_params).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from jaxcollapse import _checks
from jaxcollapse.families.base import FamilyBase, all_finite, family, register, wrong_params
from jaxcollapse.families.gaussian import GaussianParams
from jaxcollapse.types import FitInfo, Source

MOONS_NODES = 512  # midpoint nodes per half circle: spacing pi/512 = 0.006, well below a noise >= 0.02


class KDEParams(NamedTuple):
    points: jax.Array     # [m, d]
    weights: jax.Array    # [m]  normalised; 0 = not in the training set
    bandwidth: jax.Array  # []


class HeldOut(NamedTuple):
    """A chain's held-out real points with the source's log-density there (computed once per chain)."""

    points: jax.Array           # [k, d]
    source_log_prob: jax.Array  # [k]


class MoonsParams(NamedTuple):
    """Two moons (scikit-learn's make_moons, drawn iid): the half circle (cos t, sin t) or its shifted
    mirror (1 - cos t, 1/2 - sin t) with probability 1/2 each, t ~ U(0, pi), plus N(0, noise^2 I)."""

    noise: jax.Array  # []


@register("kde")
@family(static=("dim",))
class KDE(FamilyBase):
    """Gaussian KDE with bandwidth h in `dim` dimensions: p(x) = sum_i w_i N(x; x_i, h^2 I).

    Sources: GaussianParams (a blob), MoonsParams (two moons, dim 2), KDEParams, or a data array.
    Metrics: points_variance (tr of the points' ddof-0 covariance, S^2 of ORACLES.md section 9;
    the KDE's own covariance adds h^2 I), heldout_loglik (mean log-density of held-out real points,
    heldout_size per chain from a parametric source), kl_to_source (a held-out Monte-Carlo estimate
    of KL(source || KDE), when the source has a density).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> fam = KDE(bandwidth=0.3, dim=2)
      >>> x = fam.sample(jax.random.key(0), fam.make_moons(noise=0.05), 100)
      >>> params, info = fam.fit(jax.random.key(1), x, jnp.ones(100), None)
      >>> params.points.shape
      (100, 2)
    """

    bandwidth: float
    dim: int = 1

    has_stats = False
    heldout_size = 256

    def __post_init__(self):
        if _checks.is_concrete(self.bandwidth) and np.ndim(self.bandwidth) != 0:  # one model per family
            raise ValueError(f"bandwidth must be one number > 0.0, got an array of shape {np.shape(self.bandwidth)}")
        _checks.number_in("bandwidth", self.bandwidth, 0.0, np.inf, low_open=True)
        _checks.positive_int("dim", self.dim)

    @property
    def point_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    @property
    def point_dtype(self):
        return jnp.result_type(float)

    # ---- host-side -------------------------------------------------------------------
    def make_params(self, points, weights=None, bandwidth=None) -> KDEParams:
        """A KDE as a source (defaults: equal weights, the family's bandwidth)."""
        points = self.check_data("points", points)
        n = points.shape[0]
        weights = np.full(n, 1.0 / n) if weights is None else _checks.finite_array("weights", weights, shape=(n,))
        if np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        bandwidth = self.bandwidth if bandwidth is None else bandwidth
        _checks.number_in("bandwidth", bandwidth, 0.0, np.inf, low_open=True)
        dtype = self.point_dtype
        return KDEParams(points, jnp.asarray(weights / weights.sum(), dtype), jnp.asarray(bandwidth, dtype))

    def make_moons(self, noise=0.05) -> MoonsParams:
        if self.dim != 2:
            raise ValueError(f"two moons are 2-D; the family has dim={self.dim}")
        _checks.number_in("noise", noise, 0.0, np.inf, low_open=True)  # the density needs noise > 0
        return MoonsParams(jnp.asarray(noise, self.point_dtype))

    def make_blob(self, mean=None, cov=None) -> GaussianParams:
        mean = np.zeros(self.dim) if mean is None else _checks.finite_array("mean", mean, shape=(self.dim,))
        cov = np.eye(self.dim) if cov is None else _checks.spd_matrix("cov", cov, self.dim)
        return GaussianParams(jnp.asarray(mean, self.point_dtype), jnp.asarray(cov, self.point_dtype))

    def check_params(self, params):
        try:
            if isinstance(params, KDEParams):
                return self.make_params(*params)
            if isinstance(params, GaussianParams):
                return self.make_blob(params.mean, params.cov)
            if isinstance(params, MoonsParams):
                return self.make_moons(params.noise)
        except ValueError as err:
            raise ValueError(f"source {err} (KDE(dim={self.dim}))") from None
        raise wrong_params(self, params, KDEParams)

    def check_data(self, name: str, data):
        data = _checks.finite_array(name, data, ndim=2)
        if data.shape[1] != self.dim:
            raise ValueError(f"{name} must be a data array [n, {self.dim}] for KDE(dim={self.dim}), got shape {data.shape}")
        return jnp.asarray(data, self.point_dtype)

    def check_settings(self, n_samples: int) -> None:
        del n_samples

    # ---- pure, one chain ---------------------------------------------------------------
    def sample(self, key, params, n: int) -> jax.Array:
        if isinstance(params, GaussianParams):
            chol = jnp.linalg.cholesky(params.cov)
            return params.mean + jax.random.normal(key, (n, self.dim), params.cov.dtype) @ chol.T
        if isinstance(params, MoonsParams):
            return _sample_moons(key, params.noise, n)
        k_pick, k_noise = jax.random.split(key)
        cdf = jnp.cumsum(params.weights)
        u = jax.random.uniform(k_pick, (n,), cdf.dtype) * cdf[-1]
        index = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1)  # skips weight-0 rows
        return params.points[index] + params.bandwidth * jax.random.normal(k_noise, (n, self.dim), cdf.dtype)

    def log_prob(self, params, x) -> jax.Array:
        if isinstance(params, GaussianParams):
            return jax.scipy.stats.multivariate_normal.logpdf(x, params.mean, params.cov)
        if isinstance(params, MoonsParams):
            return _moons_log_prob(params.noise, x)
        return _kde_log_prob(params.points, params.weights, params.bandwidth, x)

    def fit(self, key, x, w, init=None) -> tuple[KDEParams, FitInfo]:
        del key, init  # the data are the model
        weights = w / jnp.sum(w)
        params = KDEParams(x, weights, jnp.asarray(self.bandwidth, x.dtype))
        info = FitInfo(n_iter=jnp.asarray(1, jnp.int32), converged=jnp.asarray(True),
                       log_lik=jnp.asarray(jnp.nan, x.dtype), finite=all_finite(params))
        return params, info

    def chain_source(self, key, source: Source, n_samples: int) -> Source:
        """Held-out points per chain (FamilyBase), with the source's log-density there computed once."""
        source = super().chain_source(key, source, n_samples)
        if source.params is None or source.heldout is None or isinstance(source.heldout, HeldOut):
            return source
        return source._replace(heldout=HeldOut(source.heldout, self.log_prob(source.params, source.heldout)))

    def resize_params(self, params: KDEParams, like: KDEParams) -> KDEParams:
        """Generation 0's KDE padded with weight-0 rows to the training-set shape of later generations."""
        rows, target = params.points.shape[0], like.points.shape[0]
        if target < rows:
            raise ValueError(f"a stage that trains on fewer points ({target}) than generation 0's {rows} "
                             "cannot carry a KDE")
        pad = target - rows
        return KDEParams(jnp.pad(params.points, ((0, pad), (0, 0))), jnp.pad(params.weights, (0, pad)),
                         params.bandwidth)

    def metrics(self, key, params: KDEParams, source: Source) -> dict:
        del key  # closed forms and the chain's fixed held-out points
        mean = params.weights @ params.points
        centred = params.points - mean
        out = {"points_variance": jnp.sum(params.weights @ centred ** 2)}
        heldout = source.heldout
        if heldout is not None:
            points = heldout.points if isinstance(heldout, HeldOut) else heldout
            model = self.log_prob(params, points)
            out["heldout_loglik"] = jnp.mean(model)
            if source.params is not None:
                truth = heldout.source_log_prob if isinstance(heldout, HeldOut) else self.log_prob(source.params, points)
                out["kl_to_source"] = jnp.mean(truth - model)
        return out


def _kde_log_prob(points, weights, bandwidth, x):
    """log sum_i w_i N(x; x_i, h^2 I) for x [k, d], as a matmul (points and x centred first)."""
    centre = jnp.mean(x, axis=0)
    p, q = points - centre, x - centre
    sq = jnp.sum(q ** 2, 1)[:, None] + jnp.sum(p ** 2, 1)[None, :] - 2.0 * q @ p.T
    log_kernel = -0.5 * jnp.maximum(sq, 0.0) / bandwidth ** 2 - 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi * bandwidth ** 2)
    return logsumexp(log_kernel, axis=1, b=weights[None, :])


def _moon_curves(t):
    upper = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)
    lower = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=-1)
    return upper, lower


def _sample_moons(key, noise, n: int):
    k_t, k_half, k_noise = jax.random.split(key, 3)
    t = jax.random.uniform(k_t, (n,), noise.dtype, 0.0, jnp.pi)
    upper, lower = _moon_curves(t)
    on_lower = jax.random.bernoulli(k_half, 0.5, (n,))
    return jnp.where(on_lower[:, None], lower, upper) + noise * jax.random.normal(k_noise, (n, 2), noise.dtype)


def _moons_log_prob(noise, x):
    """The two-moons density by the midpoint rule over t (MOONS_NODES nodes per half circle)."""
    t = (jnp.arange(MOONS_NODES, dtype=x.dtype) + 0.5) * jnp.pi / MOONS_NODES
    nodes = jnp.concatenate(_moon_curves(t), axis=0)
    weights = jnp.full(nodes.shape[0], 1.0 / nodes.shape[0], x.dtype)
    return _kde_log_prob(nodes, weights, noise, x)
