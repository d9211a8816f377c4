"""Distances and summaries between fitted models and the source (pure, one chain)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from jaxcollapse.families import log_cholesky


def log_det_spd(cov):
    """log det of a symmetric positive semi-definite matrix via Cholesky: -inf when it is singular, never NaN.

    A pivot within rounding of zero counts as zero (log_cholesky.cholesky). Leading axes are a batch
    (a mixture's components: [K, d, d] gives [K]).
    """
    cov = jnp.asarray(cov)
    if cov.ndim > 2:
        return jax.vmap(log_det_spd)(cov)
    return log_cholesky.log_det(log_cholesky.factor(cov)[1])


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


def gaussian_kl_to_model(p, model):
    """KL(p || model) with the model factored (log_cholesky): exact log det, no covariance inverted.

    tr(Sigma_m^-1 Sigma_p) + maha = sum_j exp(-2 log_diag_j) ||row j of U^-1 [L_p, mu_m - mu_p]||^2, each
    term formed in log space; past float32's largest number the KL is +inf (so is a degenerate model's).
    """
    dim = p.mean.shape[-1]
    rows = log_cholesky.solve_unit(model.unit_chol,
                                   jnp.concatenate([jnp.linalg.cholesky(p.cov), (model.mean - p.mean)[:, None]], 1))
    row_sq = jnp.sum(rows**2, axis=1)       # > 0: U^-1 L_p has the positive diagonal of L_p
    degenerate = ~jnp.all(jnp.isfinite(model.log_diag))
    log_diag = jnp.where(degenerate, 0.0, model.log_diag)
    spread = jnp.sum(jnp.exp(jnp.log(row_sq) - 2.0 * log_diag))
    kl = 0.5 * (spread - dim + log_cholesky.log_det(log_diag) - log_det_spd(p.cov))
    return jnp.where(degenerate, jnp.inf, kl)


def entropy(probs):
    """Shannon entropy in nats (0 log 0 = 0)."""
    return -jnp.sum(xlogy(probs, probs), axis=-1)


def total_variation(p, q):
    return 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)
