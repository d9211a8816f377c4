"""Covariances carried as a unit lower-triangular factor and log-scales, so collapse can be followed.

    Sigma = L L^T,   L = U diag(exp(log_diag)),   U unit lower-triangular

A collapsing chain shrinks its covariance by thousands of orders of magnitude. As a float32 matrix
it underflows and loses rank; here the scales live in log space (log det Sigma = 2 sum(log_diag),
exact at any depth) and U stays bounded. A refit in the current model's own coordinates, whose
sample covariance has Cholesky factor T, gives L' = L T: `compose` multiplies the factors without
ever forming exp(log_diag) (U' = U D V D^-1 with D = diag(exp(log_diag)), V = T diag(T)^-1, whose
entries exp(log_diag_i - log_diag_j) V_ij are ratios of scales, not scales).

A direction the data do not span (a pivot at or below the rounding noise of the matrix) is carried
as log_diag = -inf with a zero column: the model is degenerate, and not all of its numbers are finite,
so the engine's per-fit `finite` flag marks the generation where it happened. It stays degenerate.
Pure functions of one matrix (no batch axis): the engine vmaps.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def cholesky(a, rank=None):
    """Lower Cholesky factor of a symmetric positive semi-definite matrix, never NaN for finite input.

    A pivot <= dim * eps * a_jj (indistinguishable from zero after rounding) gives a zero column:
    L L^T is then the positive semi-definite part the data determine. rank (traced): columns from
    `rank` on are zero whatever rounding left there (n centred points span at most n - 1 directions).
    """
    a = jnp.asarray(a)
    dim = a.shape[-1]
    tiny = dim * jnp.finfo(a.dtype).eps
    if dim == 1:
        return jnp.sqrt(jnp.where((a > 0) if rank is None else (a > 0) & (rank >= 1), a, 0.0))
    index = jnp.arange(dim)

    def column(j, low):
        col = a[:, j] - low @ low[j]           # a[i, j] - sum_{k<j} L[i, k] L[j, k] (columns >= j still zero)
        pivot = col[j]
        ok = pivot > tiny * a[j, j]
        if rank is not None:
            ok = ok & (j < rank)
        root = jnp.sqrt(jnp.where(ok, pivot, 1.0))
        new = jnp.where(ok & (index > j), col / root, 0.0)
        new = jnp.where(index == j, jnp.where(ok, root, 0.0), new)
        return low.at[:, j].set(new)

    return jax.lax.fori_loop(0, dim, column, jnp.zeros_like(a))


def split(low):
    """(U, log_diag) of a lower-triangular factor L = U diag(exp(log_diag)); a zero column gives -inf."""
    diag = jnp.diagonal(low)
    positive = diag > 0
    unit = low / jnp.where(positive, diag, 1.0)[None, :]
    unit = jnp.where(jnp.eye(low.shape[-1], dtype=bool), 1.0, unit)
    return unit, jnp.log(jnp.where(positive, diag, 0.0))


def factor(cov, rank=None):
    """(U, log_diag) of a covariance matrix (degenerate directions: -inf; see cholesky for rank)."""
    return split(cholesky(cov, rank))


def compose(unit, log_diag, t):
    """(U', log_diag') of L' = L T, for L = U diag(exp(log_diag)) and T lower-triangular (exact at any scale)."""
    t_unit, t_log = split(t)
    finite = jnp.isfinite(log_diag)
    # (D V D^-1)_ij = exp(log_diag_i - log_diag_j) V_ij below the diagonal; a degenerate column j stays empty
    gap = jnp.where(finite[None, :], log_diag[:, None] - jnp.where(finite, log_diag, 0.0)[None, :], -jnp.inf)
    lower = jnp.tril(jnp.ones_like(t, dtype=bool), k=-1)
    mixed = jnp.where(lower, t_unit * jnp.exp(jnp.where(lower, gap, 0.0)), 0.0) + jnp.eye(t.shape[-1], dtype=t.dtype)
    return unit @ mixed, log_diag + t_log


def matrix(unit, log_diag):
    """L = U diag(exp(log_diag)) as a float matrix (underflows to zero columns for deep collapse)."""
    return unit * jnp.exp(log_diag)[..., None, :]


def covariance(unit, log_diag):
    """Sigma = L L^T as a float matrix (underflows to zero for deep collapse; use the log forms for metrics)."""
    low = matrix(unit, log_diag)
    return low @ jnp.swapaxes(low, -1, -2)


def log_det(log_diag):
    """log det Sigma, exact: -inf for a degenerate model."""
    return 2.0 * jnp.sum(log_diag, axis=-1)


def log_mean_var(unit, log_diag):
    """log(tr Sigma / d), the log of the mean per-coordinate variance (log sigma^2 in one dimension).

    tr Sigma = sum_k exp(2 log_diag_k) ||U[:, k]||^2, summed in log space.
    """
    column_norms = jnp.sum(unit**2, axis=-2)   # >= 1: U has a unit diagonal
    dim = log_diag.shape[-1]
    return jax.nn.logsumexp(2.0 * log_diag + jnp.log(column_norms), axis=-1) - math.log(dim)


def solve_unit(unit, v):
    """U^-1 v for v [d] or [d, k]: U is unit lower-triangular and bounded, so no scale enters here."""
    return jax.scipy.linalg.solve_triangular(unit, v, lower=True, unit_diagonal=True)
