"""Gaussian-mixture distances and summaries (pure, one mixture; vmap for histories).

A mixture is any NamedTuple with weights [K], means [K, d], covs [K, d, d] (GMMParams);
two mixtures may have different K.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse._precision import full_float32
from jaxcollapse.families.em.densities import MixtureParams, point_log_prob
from jaxcollapse.families.em.reductions import row_sums


class Mixture(NamedTuple):
    weights: jax.Array  # [K]
    means: jax.Array    # [K, d]
    covs: jax.Array     # [K, d, d]


def _log_gauss_cross(means_a, covs_a, means_b, covs_b):
    """log N(a_i; b_j, A_i + B_j) as [K_a, K_b]: log of the Gaussian product integral."""
    d = means_a.shape[-1]
    cov = covs_a[:, None] + covs_b[None, :]                       # [Ka, Kb, d, d]
    diff = means_a[:, None] - means_b[None, :]                    # [Ka, Kb, d]
    chol = jnp.linalg.cholesky(cov)
    y = jax.scipy.linalg.solve_triangular(chol, diff[..., None], lower=True)[..., 0]
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
    return -0.5 * (d * math.log(2 * math.pi) + jnp.sum(y * y, -1)) - half_log_det


def _cross(p, q):
    """integral of p(x) q(x) dx = sum_ij p_i q_j N(mu_i; nu_j, S_i + T_j)."""
    log_terms = (_log_gauss_cross(p.means, p.covs, q.means, q.covs)
                 + jnp.log(p.weights)[:, None] + jnp.log(q.weights)[None, :])
    return jnp.exp(jax.nn.logsumexp(log_terms))


def l2_distance(p, q):
    """Squared L2 distance integral of (p(x) - q(x))^2 dx between two Gaussian mixtures, closed form.

    = <p,p> - 2 <p,q> + <q,q>, each a sum of Gaussian product integrals
    N(a; b, A + B). Clipped at 0 (rounding can make a tiny difference negative); it
    cancels large terms when both mixtures are narrow, so use float64 for near-equal pairs.
    """
    return jnp.maximum(_cross(p, p) - 2.0 * _cross(p, q) + _cross(q, q), 0.0)


def l2_to_generation(history, generation: int = 0):
    """[n_chains, n_generations + 1] L2 distance of every generation's mixture to `generation`'s, per chain.

    history: weights [c, g, K], means [c, g, K, d], covs [c, g, K, d, d] (Result.params of a GMM
    run, a GMMParams or a dict). Computed in float64 on the host: narrow mixtures cancel large terms.
    """
    if isinstance(history, dict):
        history = tuple(history[name] for name in ("weights", "means", "covs"))
    with jax.enable_x64(True):
        hist = Mixture(*(np.asarray(a, np.float64) for a in history))
        ref = Mixture(*(a[:, generation] for a in hist))
        per_gen = jax.vmap(l2_distance, in_axes=(0, None))
        with full_float32():
            return np.asarray(jax.jit(jax.vmap(per_gen))(hist, ref))


def log_prob(params, x):
    """log p(x_n) under the mixture, [n]."""
    return point_log_prob(MixtureParams(params.weights, params.means, params.covs), x)


def heldout_loglik(params, x):
    """Mean log-likelihood of a held-out (real) sample x [n, d] under the mixture.

    Summed as a matrix-vector product (em/reductions.row_sums): XLA:CPU split a jnp.mean over the
    points differently with the number of chains a device holds, and the last bits followed."""
    return row_sums([log_prob(params, x)])[0] / x.shape[0]


def component_std(params):
    """[K] sqrt(trace(cov_k) / d): the RMS standard deviation over the axes of each component."""
    d = params.covs.shape[-1]
    return jnp.sqrt(jnp.trace(params.covs, axis1=-2, axis2=-1) / d)
