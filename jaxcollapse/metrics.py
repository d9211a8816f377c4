"""Distances and summaries between fitted models and the source (pure, one chain)."""
from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import xlogy


def log_det_spd(cov):
    """log det of a symmetric positive definite matrix via Cholesky (finite while cov > 0)."""
    chol = jnp.linalg.cholesky(cov)
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def gaussian_w2(p, q):
    """Closed-form Wasserstein-2 distance between N(p.mean, p.cov) and N(q.mean, q.cov).

    tr (Q^1/2 P Q^1/2)^1/2 = sum of square roots of the eigenvalues of L^T P L with Q = L L^T
    (the same spectrum), which needs one symmetric eigenvalue solve and no eigenvectors.
    """
    mean_term = jnp.sum((p.mean - q.mean) ** 2)
    if p.cov.shape[-1] == 1:  # scalar case: (sigma_p - sigma_q)^2, exact and cheap
        cov_term = (jnp.sqrt(p.cov[0, 0]) - jnp.sqrt(q.cov[0, 0])) ** 2
    else:
        chol_q = jnp.linalg.cholesky(q.cov)
        # a failed (non-finite) chain would send XLA's CPU eigensolver into endless sweeps: solve on I instead
        finite = jnp.all(jnp.isfinite(p.cov)) & jnp.all(jnp.isfinite(chol_q))
        product = jnp.where(finite, chol_q.T @ p.cov @ chol_q, jnp.eye(p.cov.shape[-1], dtype=p.cov.dtype))
        cross = jnp.where(finite, jnp.linalg.eigvalsh(product), jnp.nan)
        cov_term = jnp.trace(p.cov) + jnp.trace(q.cov) - 2.0 * jnp.sum(jnp.sqrt(jnp.clip(cross, 0.0)))
    return jnp.sqrt(jnp.clip(mean_term + cov_term, 0.0))


def gaussian_kl(p, q):
    """KL(p || q) for Gaussians; with p the source and q the model it grows as q forgets p's tails."""
    dim = p.mean.shape[-1]
    chol_q = jnp.linalg.cholesky(q.cov)
    whiten = lambda b: solve_triangular(chol_q, b, lower=True)  # noqa: E731  L^-1 b
    trace_term = jnp.sum(whiten(jnp.linalg.cholesky(p.cov)) ** 2)  # tr(Q^-1 P) = ||L_q^-1 L_p||_F^2
    maha = jnp.sum(whiten(q.mean - p.mean) ** 2)
    log_det_q = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_q)))
    return 0.5 * (trace_term + maha - dim + log_det_q - log_det_spd(p.cov))


def entropy(probs):
    """Shannon entropy in nats (0 log 0 = 0)."""
    return -jnp.sum(xlogy(probs, probs), axis=-1)


def total_variation(p, q):
    return 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)
