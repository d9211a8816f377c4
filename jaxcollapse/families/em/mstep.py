"""The M-step: weighted moments, and re-seeding of a component that lost all its points.

A component k whose total responsibility falls below eps * sum(w) ("lost all its points")
is re-seeded deterministically: its mean goes to the worst-explained training point (lowest
mixture log-likelihood among w > 0) plus (k / K) times the data's per-axis std (so several
emptied components stay distinct), its covariance to the weighted covariance of the whole
training set (+ reg_covar), its share nk to sum(w) / K. No key is used, so a replay matches.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcollapse.families.em.densities import SMALL_DIM, UNROLL_DIM, MixtureParams, joint_t, normalise
from jaxcollapse.families.em.reductions import row_sums


def eps(dtype):
    return jnp.finfo(dtype).eps


def stored_covs(second, covariance, reg_covar):
    """Second moments (full [K, d, d] or variances [K, d]) -> stored full [K, d, d] with reg_covar."""
    if covariance == "full":
        d = second.shape[-1]
        covs = second + reg_covar * jnp.eye(d, dtype=second.dtype)
        return capped_correlation(covs) if d == 2 else rounding_floor(covs)
    d = second.shape[-1]
    var = second + reg_covar
    if covariance == "spherical":
        var = jnp.broadcast_to(jnp.mean(var, -1, keepdims=True), var.shape)
    return var[..., :, None] * jnp.eye(d, dtype=var.dtype)


def capped_correlation(covs):
    """2 x 2 covariances [..., 2, 2] with |correlation| <= 1 - 8 eps: positive definite at the dtype's resolution.

    A component that collapses onto a line has a rank-1 covariance: reg_covar keeps it positive definite in
    exact arithmetic, but in float32 the rounding of entries ~100 (~1e-5) swamps reg_covar 1e-6, and its
    Cholesky pivot cov11 - cov10^2 / cov00 came out negative: NaN, and the chain stayed NaN (the paper's run
    hit it). Capped, the pivot stays >= ~8 eps cov11; a covariance below the cap is returned unchanged."""
    a, b, c = covs[..., 0, 0], covs[..., 0, 1], covs[..., 1, 1]
    limit = jnp.sqrt(a * c) * (1 - 8 * eps(covs.dtype))
    b = jnp.clip(b, -limit, limit)
    return jnp.stack([jnp.stack([a, b], -1), jnp.stack([b, c], -1)], -2)


def rounding_floor(covs):
    """Covariances [..., d, d] (d >= 3) plus 8 d eps times their largest variance on the diagonal.

    capped_correlation's reason in d dimensions: a component collapsed onto a line or a plane has a
    covariance whose float32 rounding swamps reg_covar, and jnp.linalg.cholesky returned NaN for
    most of them (293 of 400 random lines in 3-D, tests/test_gmm.py); a jitter above the rounding (Cholesky succeeds
    once the smallest eigenvalue exceeds ~d eps times the largest) keeps them positive definite.
    It moves every covariance by that relative 8 d eps (2e-6 in float32 at d = 3, 5e-15 in float64)."""
    d = covs.shape[-1]
    top = jnp.max(jnp.diagonal(covs, axis1=-2, axis2=-1), -1)
    jitter = 8 * d * eps(covs.dtype) * top
    return covs + jitter[..., None, None] * jnp.eye(d, dtype=covs.dtype)


def upper_pairs(d: int):
    """(a, b) with a <= b: the entries of a symmetric d x d matrix that are computed."""
    return [(a, b) for a in range(d) for b in range(a, d)]


def symmetric(upper, pairs, d: int):
    """[..., d, d] symmetric matrices from their upper entries upper[..., i] at pairs[i] = (a, b), a <= b.

    Stacked, not scattered: on CPU a scatter is a loop of its own, run every M-step."""
    entry = {pair: upper[..., i] for i, pair in enumerate(pairs)}
    return jnp.stack([jnp.stack([entry[min(a, b), max(a, b)] for b in range(d)], -1) for a in range(d)], -2)


class Fallback(NamedTuple):
    """What an emptied component is re-seeded with (computed once per fit)."""

    covs: jax.Array     # [K, d, d] the training set's weighted covariance (+ reg_covar), shaped by type
    offsets: jax.Array  # [K, d] component k starts at the worst point + (k / K) * the data's std per axis


def fallback(xt, w, K: int, covariance: str, reg_covar) -> Fallback:
    d, n = xt.shape
    if d <= UNROLL_DIM:  # as one product: XLA:CPU runs d + 1 reductions as d + 1 passes over the points
        sums = row_sums([w] + [w * xt[a] for a in range(d)])
        total, centre = sums[0], sums[1:] / sums[0]
    else:
        total = jnp.sum(w)
        centre = jnp.sum(w[None] * xt, 1) / total
    centred = xt - centre[:, None]
    if covariance == "full" and d <= UNROLL_DIM:  # a batched einsum here ran as a slow dot on CPU
        pairs = upper_pairs(d)
        second = symmetric(row_sums([w * centred[a] * centred[b] for a, b in pairs]) / total, pairs, d)
    elif covariance == "full":
        second = jnp.einsum("n,dn,en->de", w, centred, centred) / total
    else:
        second = jnp.sum(w[None] * centred * centred, 1) / total
    covs = jnp.broadcast_to(stored_covs(second[None], covariance, reg_covar), (K, d, d))
    std = jnp.sqrt(jnp.diagonal(covs[0]))
    offsets = (jnp.arange(K, dtype=xt.dtype) / K)[:, None] * std[None, :]
    return Fallback(covs, offsets)


class Moments(NamedTuple):
    """An M-step's result before empty components are re-seeded."""

    means: jax.Array   # [K, d]
    covs: jax.Array    # [K, d, d] with reg_covar
    nk: jax.Array      # [K] total responsibility + 10 eps
    nk_raw: jax.Array  # [K] total responsibility
    total: jax.Array   # [] sum of the weights


def moments(shift, xt, w, resp, covariance: str, reg_covar) -> Moments:
    """Weighted M-step moments: means about `shift` [K, d] (any value gives the same result in exact
    arithmetic; the current means keep float32 cancellation small), covariances about the new means
    (a second pass, as scikit-learn: never negative)."""
    d, n = xt.shape
    dtype = xt.dtype
    if d <= UNROLL_DIM:
        return moments_unrolled(shift, xt, w, [resp[k] * w for k in range(shift.shape[0])], covariance, reg_covar)[1]
    diff = xt[None, :, :] - shift[:, :, None]                      # [K, d, n]
    rw = resp * w[None, :]                                          # [K, n]
    nk_raw = jnp.sum(rw, 1)
    nk = nk_raw + 10 * eps(dtype)
    first = jnp.sum(rw[:, None, :] * diff, 2) / nk[:, None]         # [K, d]  mean - shift
    means = shift + first
    diff = xt[None, :, :] - means[:, :, None]                      # about the new means
    if covariance == "full":
        if d <= SMALL_DIM:
            second = jnp.sum(rw[:, None, None, :] * diff[:, :, None, :] * diff[:, None, :, :], 3)
        else:
            second = jnp.einsum("kdn,ken->kde", rw[:, None, :] * diff, diff)
        second = second / nk[:, None, None]
    else:
        second = jnp.sum(rw[:, None, :] * diff * diff, 2) / nk[:, None]
    return Moments(means, stored_covs(second, covariance, reg_covar), nk, nk_raw, jnp.sum(w))


def moments_unrolled(shift, xt, w, rws, covariance: str, reg_covar, lead=()):
    """(sums of the `lead` rows, moments()) from the weighted responsibilities rws (K arrays [n]),
    every sum one row of a matrix-vector product (em/reductions.row_sums), for d <= UNROLL_DIM:
    faster on CPU, and each chain's sums do not depend on how many chains share the program
    (XLA:CPU reduced moments()'s [K, d, d, n] products differently at 128 and 256 chains).
    lead: more [n] rows summed in the first product (the E-step's log-likelihood: no pass of its own)."""
    K, d = shift.shape
    dtype = xt.dtype
    rows = [xt[a] for a in range(d)]
    lead = [w, *lead]
    sums = row_sums(lead + [t for k, rw in enumerate(rws) for t in [rw] + [rw * (rows[a] - shift[k, a])
                                                                           for a in range(d)]])
    lead_sums, sums = sums[:len(lead)], sums[len(lead):].reshape(K, d + 1)
    nk_raw = sums[:, 0]
    nk = nk_raw + 10 * eps(dtype)
    means = shift + sums[:, 1:] / nk[:, None]
    pairs = upper_pairs(d) if covariance == "full" else [(a, a) for a in range(d)]
    terms = []
    for k, rw in enumerate(rws):
        centred = [rows[a] - means[k, a] for a in range(d)]
        terms += [rw * centred[a] * centred[b] for a, b in pairs]
    second = row_sums(terms).reshape(K, len(pairs)) / nk[:, None]
    if covariance == "full":
        second = symmetric(second, pairs, d)
    return lead_sums[1:], Moments(means, stored_covs(second, covariance, reg_covar), nk, nk_raw, lead_sums[0])


def empty(m: Moments):
    """[K] components that lost all their points."""
    return m.nk_raw <= eps(m.total.dtype) * m.total


def worst_of(xt, w, badness):
    """The training point [d] with the highest badness (a whole pass over the points)."""
    return xt[:, first_max(jnp.where(w > 0, badness, -jnp.inf))]


def first_max(values):
    """jnp.argmax of [n] values (the first maximum; the first NaN if any) as a max and a min: an argmax
    is a two-output reduction, which XLA:CPU runs as scalar code."""
    top = jnp.max(values)
    hit = (values == top) | jnp.isnan(values)
    return jnp.min(jnp.where(hit, jnp.arange(values.shape[-1], dtype=jnp.int32), values.shape[-1] - 1))


def worst_point(theta: MixtureParams, xt, w):
    """The training point worst explained by theta (lowest mixture log-likelihood)."""
    return worst_of(xt, w, -normalise(joint_t(theta, xt)[0])[0])


def reseed(m: Moments, worst, fb: Fallback) -> MixtureParams:
    """Components that lost all their points restart at the worst point `worst` [d] (deterministic: no key)."""
    K = m.means.shape[0]
    total = m.total
    is_empty = empty(m)
    seeds = worst[None, :] + fb.offsets                              # distinct when several are empty
    means = jnp.where(is_empty[:, None], seeds, m.means)
    covs = jnp.where(is_empty[:, None, None], fb.covs, m.covs)
    nk = jnp.where(is_empty, total / K, m.nk)
    return MixtureParams(nk / jnp.sum(nk), means, covs)


def m_step_from(shift, xt, w, resp, badness, fb: Fallback, covariance: str, reg_covar):
    """Weighted M-step from responsibilities resp [K, n], re-seeding empty components.

    badness [n]: how badly each point is explained (the worst one seeds an emptied component).
    """
    m = moments(shift, xt, w, resp, covariance, reg_covar)
    return reseed(m, worst_of(xt, w, badness), fb)
