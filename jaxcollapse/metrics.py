"""Distances and summaries between fitted models and the source (pure, one chain)."""
from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import xlogy


def log_det_spd(cov):
    """log det of a symmetric positive definite matrix via Cholesky (finite while cov > 0)."""
    chol = jnp.linalg.cholesky(cov)
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def _sqrtm_psd(mat):
    vals, vecs = jnp.linalg.eigh(mat)
    return (vecs * jnp.sqrt(jnp.clip(vals, 0.0))) @ vecs.T


def gaussian_w2(p, q):
    """Closed-form Wasserstein-2 distance between N(p.mean, p.cov) and N(q.mean, q.cov)."""
    mean_term = jnp.sum((p.mean - q.mean) ** 2)
    if p.cov.shape[-1] == 1:  # scalar case: (sigma_p - sigma_q)^2, exact and cheap
        cov_term = (jnp.sqrt(p.cov[0, 0]) - jnp.sqrt(q.cov[0, 0])) ** 2
    else:
        root_q = _sqrtm_psd(q.cov)
        cross = _sqrtm_psd(root_q @ p.cov @ root_q)
        cov_term = jnp.trace(p.cov) + jnp.trace(q.cov) - 2.0 * jnp.trace(cross)
    return jnp.sqrt(jnp.clip(mean_term + cov_term, 0.0))


def gaussian_kl(p, q):
    """KL(p || q) for Gaussians; with p the source and q the model it grows as q forgets p's tails."""
    dim = p.mean.shape[-1]
    chol_q = jnp.linalg.cholesky(q.cov)
    solve = lambda b: jnp.linalg.solve(q.cov, b)  # noqa: E731  (d is small)
    diff = q.mean - p.mean
    trace_term = jnp.trace(solve(p.cov))
    maha = diff @ solve(diff)
    log_det_q = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_q)))
    return 0.5 * (trace_term + maha - dim + log_det_q - log_det_spd(p.cov))


def entropy(probs):
    """Shannon entropy in nats (0 log 0 = 0)."""
    return -jnp.sum(xlogy(probs, probs), axis=-1)


def total_variation(p, q):
    return 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)
