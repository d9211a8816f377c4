"""Gaussian mixture: batched EM (scikit-learn's GaussianMixture, weighted, written for vmap)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from jaxcollapse import _checks, metrics, mixture_metrics, settings
from jaxcollapse.families.base import FamilyBase, all_finite, compiled_when_eager, family, register, wrong_params
from jaxcollapse.families.em.densities import MixtureParams, mean_log_lik, point_log_prob
from jaxcollapse.families.em.init import init_kmeans, init_random
from jaxcollapse.families.em.loop import EMResult, LaneData, LoopState, em, lane_begin, lanes_step, running
from jaxcollapse.families.em.loop import result as em_result
from jaxcollapse.families.em.sampling import sample_mixture
from jaxcollapse.native import em as native_em
from jaxcollapse.types import FitInfo, Source

COVARIANCES = ("full", "diag", "spherical")
INITS = ("kmeans++", "random", "previous")


class GMMParams(NamedTuple):
    """Mixture of K Gaussians; covs are always full [K, d, d] (diagonal matrices for diag/spherical)."""

    weights: jax.Array  # [K]
    means: jax.Array    # [K, d]
    covs: jax.Array     # [K, d, d]


@register("gmm")
@family(static=("n_components", "dim", "covariance", "max_iter", "init", "kmeans_iter"))
class GMM(FamilyBase):
    """Mixture of `n_components` Gaussians in `dim` dimensions, fitted by EM.

    covariance: "full", "diag" or "spherical" (params always hold full [K, d, d] matrices).
    max_iter, tol: EM stops after max_iter M-steps or when the mean log-likelihood changes by
        less than tol (scikit-learn's rule, same defaults).
    reg_covar: added to every covariance's diagonal in each M-step (a floor: a collapsed
        component stays finite). Full covariances are also kept positive definite at the
        dtype's resolution, where a component collapsed onto a line or plane has rounding above
        reg_covar: in 2-D |correlation| <= 1 - 8 eps, in d >= 3 8 d eps of the largest variance
        joins the diagonal (em/mstep.py).
    init: how each generation's EM starts.
        "kmeans++": like scikit-learn's default "kmeans": k-means++ seeds, `kmeans_iter` Lloyd
            iterations, hard labels as responsibilities, one M-step. Fresh every generation.
        "random": scikit-learn's "random": random responsibilities, one M-step.
        "previous": warm start from the previous generation's mixture (fit's `init`);
            at generation 0 (init None) falls back to "kmeans++".
    kmeans_iter: Lloyd iterations after k-means++ seeding (a fixed count keeps vmap lanes in step).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> fam = GMM(2, dim=2, tol=1e-5, max_iter=2000)
      >>> src = fam.make_params(weights=[1.0], means=[[0.0, 0.0]], covs=[jnp.eye(2)])
      >>> x = fam.sample(jax.random.key(0), src, 1000)
      >>> params, info = fam.fit(jax.random.key(1), x, jnp.ones(1000), None)
      >>> params.covs.shape
      (2, 2, 2)
    """

    n_components: int
    dim: int
    covariance: str = "full"
    max_iter: int = 100
    tol: float = 1e-3
    reg_covar: float = 1e-6
    init: str = "kmeans++"
    kmeans_iter: int = 10

    has_stats = False
    heldout_size = 1000  # held-out real points per chain scored by metrics' heldout_loglik

    def __post_init__(self):
        _checks.positive_int("n_components", self.n_components)
        _checks.positive_int("dim", self.dim)
        _checks.positive_int("max_iter", self.max_iter)
        _checks.positive_int("kmeans_iter", self.kmeans_iter, minimum=0)
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {self.covariance!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        _checks.number_in("tol", self.tol, 0.0, np.inf)
        _checks.number_in("reg_covar", self.reg_covar, 0.0, np.inf)
        settings.current()  # a bad JAXCOLLAPSE_* value is named here, before anything is traced

    @property
    def point_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def execution_choices(self) -> dict[str, settings.Choice]:
        """The execution choices this family's numbers depend on, resolved under the current settings."""
        return {"em_backend": native_em.resolve(self.n_components, self.dim, self.point_dtype),
                "sums": settings.resolve_sums()}

    @property
    def point_dtype(self):
        return jnp.result_type(float)

    # ---- host-side -------------------------------------------------------------------
    def make_params(self, weights, means, covs) -> GMMParams:
        """Validated mixture params of any number of components (a source may have K != n_components)."""
        weights = _checks.finite_array("weights", weights, ndim=1)
        k = weights.shape[0]
        if k < 1:
            raise ValueError("weights must hold at least one component")
        weights = _checks.probability_vector("weights", weights, k)
        means = _checks.finite_array("means", means, shape=(k, self.dim))
        covs = _checks.finite_array("covs", covs, shape=(k, self.dim, self.dim))
        for j in range(k):
            _checks.spd_matrix(f"covs[{j}]", covs[j], self.dim)
        dtype = self.point_dtype
        return GMMParams(jnp.asarray(weights, dtype), jnp.asarray(means, dtype), jnp.asarray(covs, dtype))

    def check_params(self, params) -> GMMParams:
        """A source mixture (any K; dim must match) or a single Gaussian (GaussianParams: one blob)."""
        if isinstance(params, GMMParams):
            means = np.asarray(params.means)
            if means.ndim != 2 or means.shape[1] != self.dim:
                raise ValueError(f"source must have dimension dim={self.dim}; its means have shape {means.shape}")
            return self.make_params(params.weights, params.means, params.covs)
        if hasattr(params, "mean") and hasattr(params, "cov"):  # GaussianParams: one blob
            mean = np.asarray(params.mean)
            if mean.shape != (self.dim,):
                raise ValueError(f"source must have dimension dim={self.dim}; its mean has shape {mean.shape}")
            return self.make_params([1.0], mean[None], np.asarray(params.cov)[None])
        raise wrong_params(self, params, GMMParams)

    def check_data(self, name: str, data):
        data = _checks.finite_array(name, data, ndim=2)
        if data.shape[1] != self.dim:
            raise ValueError(f"{name} must be GMMParams or a data array [n, {self.dim}] (dim={self.dim}), "
                             f"got shape {data.shape}")
        return jnp.asarray(data, self.point_dtype)

    def check_settings(self, n_samples: int) -> None:
        if self.n_components > n_samples:
            raise ValueError(f"n_components ({self.n_components}) must be <= n_samples, got n_samples={n_samples}")

    # ---- pure, one chain ---------------------------------------------------------------
    def distribution(self, params: GMMParams) -> dist.MixtureSameFamily:
        return dist.MixtureSameFamily(dist.Categorical(probs=params.weights),
                                      dist.MultivariateNormal(params.means, covariance_matrix=params.covs))

    def sample(self, key, params: GMMParams, n: int) -> jax.Array:
        """n exact draws; params may have any number of components."""
        return sample_mixture(key, MixtureParams(*params), n)

    def generate(self, key, params: GMMParams, n: int, source: Source | None = None) -> jax.Array:
        return self.sample(key, params, n)

    def log_prob(self, params: GMMParams, x) -> jax.Array:
        return point_log_prob(MixtureParams(*params), x)

    def initial_params(self, key, x, w) -> GMMParams:
        """Fresh initialisation ("kmeans++" or "random"; "previous" without params uses "kmeans++")."""
        if self.init == "random":
            p = init_random(key, x, w, self.n_components, self.covariance, self.reg_covar)
        else:
            p = init_kmeans(key, x, w, self.n_components, self.kmeans_iter, self.covariance, self.reg_covar)
        return GMMParams(*p)

    @compiled_when_eager
    def fit(self, key, x, w, init=None) -> tuple[GMMParams, FitInfo]:
        """EM on points x [n, dim] with weights w [n] (0 = not in the training set).

        init: previous params, used only when self.init == "previous" (None -> k-means++).
        FitInfo.log_lik is the mean weighted log-likelihood at the returned params.
        """
        if self.init != "random" and (self.init != "previous" or init is None):
            x, w = self._cast(x, w)
            if native_em.usable(self.n_components, self.dim, x.dtype):  # k-means++, Lloyd and EM in one call
                fitted, n_iter, converged = native_em.kmeans_em(
                    key, x, w, n_components=self.n_components, kmeans_iter=self.kmeans_iter, tol=self.tol,
                    max_iter=self.max_iter, covariance=self.covariance, reg_covar=self.reg_covar)
                return self._fitted(EMResult(MixtureParams(*fitted), n_iter, converged), x.T, w)
        x, w, start = self._em_start(key, x, w, init)
        result = em(MixtureParams(*start), x, w, tol=self.tol, max_iter=self.max_iter,
                    covariance=self.covariance, reg_covar=self.reg_covar)
        return self._fitted(result, x.T, w)

    # fit in pieces, for an engine that steps many chains' fits lane by lane (engine/pipeline.py):
    # fit_end(iterate fit_iterate while fit_running, from fit_begin(...)) is fit(...), lane by lane
    def fit_begin(self, key, x, w, init=None) -> tuple[LoopState, LaneData]:
        """The fit's start, initialisation included, not yet iterated (one chain): (state, data)."""
        x, w, start = self._em_start(key, x, w, init)
        return lane_begin(MixtureParams(*start), x, w, self.covariance, jnp.asarray(self.reg_covar, x.dtype))

    def fit_iterate(self, state: LoopState, data: LaneData) -> LoopState:
        """One EM iteration of a batch of fits (leading axis); finished ones are left unchanged."""
        return lanes_step(state, data, tol=self.tol, max_iter=self.max_iter, covariance=self.covariance,
                          reg_covar=self.reg_covar)

    def fit_running(self, state: LoopState) -> jax.Array:
        return running(state, self.max_iter)

    def fit_end(self, state: LoopState, data: LaneData) -> tuple[GMMParams, FitInfo]:
        return self._fitted(em_result(state), data.xt, data.w)

    def _cast(self, x, w):
        x = jnp.asarray(x)
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else self.point_dtype
        return x.astype(dtype), jnp.asarray(w, dtype)

    def _em_start(self, key, x, w, init):
        x, w = self._cast(x, w)
        dtype = x.dtype
        if self.init == "previous" and init is not None:
            start = GMMParams(*(jnp.asarray(a, dtype) for a in init))
            if start.means.shape != (self.n_components, self.dim):
                raise ValueError(f"init must have {self.n_components} components of dim {self.dim}, "
                                 f"got means of shape {start.means.shape}")
        else:
            start = self.initial_params(key, x, w)
        return x, w, start

    def _fitted(self, result, xt, w):
        params = GMMParams(*result.params)
        log_lik = mean_log_lik(result.params, xt, w)
        return params, FitInfo(result.n_iter, result.converged, log_lik, all_finite(params))

    def metrics(self, key, params: GMMParams, source: Source) -> dict:
        """Per chain: component_std [K] = sqrt(trace(cov_k) / dim) (RMS std over axes),
        log_det_cov [K], weight_entropy (nats); l2_to_source = integral of (p - q)^2 when the
        source is a distribution; heldout_loglik, the mean log-likelihood under the model of the
        source's held-out real points (a parametric source draws heldout_size of them per chain,
        once, from the chain's key). L2 to generation 0 needs the whole history:
        mixture_metrics.l2_to_generation(res.params) (the CLI adds it as l2_to_generation0)."""
        del key  # closed forms and fixed held-out points
        out = {
            "component_std": mixture_metrics.component_std(params),
            "log_det_cov": metrics.log_det_spd(params.covs),
            "weight_entropy": metrics.entropy(params.weights),
        }
        if source.params is not None:
            out["l2_to_source"] = mixture_metrics.l2_distance(params, source.params)
        if source.heldout is not None:
            out["heldout_loglik"] = mixture_metrics.heldout_loglik(params, source.heldout)
        return out
