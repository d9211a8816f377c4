"""Mixture densities: Cholesky factors, joint log densities log w_k + log N(x_n; mean_k, cov_k), log p(x).

Layout: points are handled transposed, xt [d, n], so every per-point array is [..., n] with n
innermost; XLA then vectorises over points (an [n, K, d] layout with tiny trailing axes runs far
slower on CPU).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcollapse.families.em.reductions import row_sums

SMALL_DIM = 4  # up to this d, broadcast-multiply-add (fuses); above it, einsum (a batched matmul)
UNROLL_DIM = 3  # up to this d, EM and Lloyd steps are written per coordinate (each sum a fused reduction: faster on CPU)


class MixtureParams(NamedTuple):
    weights: jax.Array  # [K]
    means: jax.Array    # [K, d]
    covs: jax.Array     # [K, d, d]


def cholesky(covs):
    """Lower Cholesky factors [K, d, d]; closed forms for d = 1, 2 (cheaper than LAPACK calls under vmap)."""
    d = covs.shape[-1]
    if d == 1:
        return jnp.sqrt(covs)
    if d == 2:
        a = jnp.sqrt(covs[:, 0, 0])
        b = covs[:, 1, 0] / a
        c = jnp.sqrt(covs[:, 1, 1] - b * b)
        zero = jnp.zeros_like(a)
        return jnp.stack([jnp.stack([a, zero], -1), jnp.stack([b, c], -1)], -2)
    return jnp.linalg.cholesky(covs)


def inv_lower(chol):
    """Inverse of lower-triangular factors [K, d, d]."""
    d = chol.shape[-1]
    if d == 1:
        return 1.0 / chol
    if d == 2:
        a, b, c = chol[:, 0, 0], chol[:, 1, 0], chol[:, 1, 1]
        zero = jnp.zeros_like(a)
        return jnp.stack([jnp.stack([1.0 / a, zero], -1), jnp.stack([-b / (a * c), 1.0 / c], -1)], -2)
    eye = jnp.broadcast_to(jnp.eye(d, dtype=chol.dtype), chol.shape)
    return jax.scipy.linalg.solve_triangular(chol, eye, lower=True)


def joint_t(params: MixtureParams, xt):
    """(log w_k + log N(x_n; mean_k, cov_k) as [K, n], centred points x_n - mean_k as [K, d, n])."""
    d = xt.shape[0]
    chol = cholesky(params.covs)
    inv_chol = inv_lower(chol)                                     # L^-1 [K, d, d]
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)  # [K]
    diff = xt[None, :, :] - params.means[:, :, None]               # [K, d, n]
    if d <= SMALL_DIM:
        y = jnp.sum(inv_chol[:, :, :, None] * diff[:, None, :, :], 2)  # [K, d, n]
    else:
        y = jnp.einsum("ked,kdn->ken", inv_chol, diff)
    quad = jnp.sum(y * y, 1)                                       # [K, n]
    const = jnp.log(params.weights) - half_log_det - 0.5 * d * math.log(2.0 * math.pi)
    return const[:, None] - 0.5 * quad, diff


def normalise(joint):
    """(per-point log-likelihood [n], responsibilities [K, n]) from joint log densities [K, n]."""
    top = jnp.max(joint, 0)
    e = jnp.exp(joint - top[None])
    total = jnp.sum(e, 0)
    return top + jnp.log(total), e / total[None]


def point_log_prob(params: MixtureParams, x):
    """log p(x_n) under the mixture, [n] (x [n, d])."""
    return normalise(joint_t(params, x.T)[0])[0]


def joint_rows(params: MixtureParams, xt):
    """joint_t's joint log densities as K arrays [n], written per coordinate (d <= UNROLL_DIM: XLA fuses
    them into their consumers instead of materialising [K, d, n] products)."""
    K, d = params.means.shape
    chol = cholesky(params.covs)
    inv_chol = inv_lower(chol)
    const = (jnp.log(params.weights) - jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
             - 0.5 * d * math.log(2.0 * math.pi))
    rows = [xt[a] for a in range(d)]
    joints = []
    for k in range(K):
        diff = [rows[a] - params.means[k, a] for a in range(d)]
        quad = 0.0
        for e in range(d):
            y = sum(inv_chol[k, e, a] * diff[a] for a in range(e + 1))
            quad = quad + y * y
        joints.append(const[k] - 0.5 * quad)
    return joints


def normalise_rows(joints):
    """normalise() on K arrays [n]: (per-point log-likelihood, K unnormalised responsibilities, their total)."""
    if len(joints) == 2:  # one exp per point: the larger joint's term is exp(0) = 1
        gap = joints[1] - joints[0]
        small = jnp.exp(-jnp.abs(gap))
        total = 1.0 + small
        per_point = jnp.maximum(joints[0], joints[1]) + jnp.log(total)  # scikit-learn's logsumexp: log1p is slower on XLA:CPU
        return per_point, [jnp.where(gap > 0, small, 1.0), jnp.where(gap > 0, 1.0, small)], total
    top = joints[0]
    for joint in joints[1:]:
        top = jnp.maximum(top, joint)
    expd = [jnp.exp(joint - top) for joint in joints]
    total = sum(expd)
    return top + jnp.log(total), expd, total


def mean_log_lik(params: MixtureParams, xt, w):
    """sum_n w_n log p(x_n) / sum_n w_n (xt [d, n]): per coordinate and summed by row_sums up to UNROLL_DIM
    (the general path's max, sum over components and reductions are slower on CPU)."""
    if xt.shape[0] > UNROLL_DIM:
        return jnp.sum(w * point_log_prob(params, xt.T)) / jnp.sum(w)
    ll_sum, total = row_sums([w * normalise_rows(joint_rows(params, xt))[0], w])
    return ll_sum / total
