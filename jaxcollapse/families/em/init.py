"""Where each generation's EM starts: scikit-learn's "kmeans" and "random" initialisations."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcollapse.families.em.densities import MixtureParams
from jaxcollapse.families.em.kmeans import kmeans_plus_plus, lloyd, nearest
from jaxcollapse.families.em.mstep import fallback, m_step_from


def init_kmeans(key, x, w, K: int, kmeans_iter: int, covariance: str, reg_covar) -> MixtureParams:
    """sklearn's default 'kmeans' init, approximated: k-means++ seeds, kmeans_iter Lloyd steps,
    hard labels as responsibilities, one M-step."""
    xt = x.T
    centres = lloyd(kmeans_plus_plus(key, xt, w, K), xt, w, kmeans_iter)
    best, label = nearest(xt, centres)
    resp = jnp.stack([(label == k).astype(x.dtype) for k in range(K)])
    fb = fallback(xt, w, K, covariance, reg_covar)
    return m_step_from(centres, xt, w, resp, best, fb, covariance, reg_covar)


def init_random(key, x, w, K: int, covariance: str, reg_covar) -> MixtureParams:
    """sklearn's 'random' init: uniform random responsibilities, normalised per point, one M-step."""
    xt = x.T
    resp = jax.random.uniform(key, (K, x.shape[0]), x.dtype)
    resp = resp / jnp.sum(resp, 0, keepdims=True)
    centre = jnp.sum(w[None] * xt, 1) / jnp.sum(w)
    fb = fallback(xt, w, K, covariance, reg_covar)
    badness = jnp.sum((xt - centre[:, None]) ** 2, 0)
    return m_step_from(jnp.broadcast_to(centre, (K, x.shape[1])), xt, w, resp, badness, fb, covariance, reg_covar)
