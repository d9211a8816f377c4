"""Weighted EM for Gaussian mixtures: pure functions of one chain, written for vmap.

Follows scikit-learn's GaussianMixture step for step so the two agree to rounding:
  - E-step in log space (logsumexp) via the Cholesky factor of each covariance;
  - M-step: nk = sum_n w_n r_nk + 10 eps, weights = nk / sum(nk), reg_covar added to the
    covariance diagonal (diag/spherical: to the variances);
  - iteration i: E-step at theta_{i-1} gives the mean log-likelihood L_{i-1}, M-step gives
    theta_i; stop when |L_{i-1} - L_{i-2}| < tol (L_{-1} = -inf) or i = max_iter.
Weights w [n] >= 0 replace sklearn's implicit ones: w = 0 removes a point.

Covariances are always stored as full [K, d, d] matrices (diagonal / spherical ones as
diagonal matrices), so parameter histories have one shape whatever the covariance type.

A component k whose total responsibility falls below eps * sum(w) ("lost all its points")
is re-seeded deterministically: its mean goes to the worst-explained training point (lowest
mixture log-likelihood among w > 0) plus (k / K) times the data's per-axis std (so several
emptied components stay distinct), its covariance to the weighted covariance of the whole
training set (+ reg_covar), its share nk to sum(w) / K. No key is used, so a replay matches.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class MixtureParams(NamedTuple):
    weights: jax.Array  # [K]
    means: jax.Array    # [K, d]
    covs: jax.Array     # [K, d, d]


class EMResult(NamedTuple):
    params: MixtureParams
    n_iter: jax.Array      # int32: M-steps done (sklearn's n_iter_)
    converged: jax.Array   # bool
    lower_bound: jax.Array  # mean log-likelihood at the params before the last M-step (sklearn's lower_bound_)


# ------------------------------------------------------------------ densities
# Layout: points are handled transposed, xt [d, n], so every per-point array is [..., n] with
# n innermost; XLA then vectorises over points (an [n, K, d] layout with tiny trailing axes
# runs ~50x slower on CPU).
_SMALL_DIM = 4  # up to this d, broadcast-multiply-add (fuses); above it, einsum (a batched matmul)


def _cholesky(covs):
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


def _inv_lower(chol):
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


def _joint_t(params: MixtureParams, xt):
    """(log w_k + log N(x_n; mean_k, cov_k) as [K, n], centred points x_n - mean_k as [K, d, n])."""
    d = xt.shape[0]
    chol = _cholesky(params.covs)
    inv_chol = _inv_lower(chol)                                    # L^-1 [K, d, d]
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)  # [K]
    diff = xt[None, :, :] - params.means[:, :, None]               # [K, d, n]
    if d <= _SMALL_DIM:
        y = jnp.sum(inv_chol[:, :, :, None] * diff[:, None, :, :], 2)  # [K, d, n]
    else:
        y = jnp.einsum("ked,kdn->ken", inv_chol, diff)
    quad = jnp.sum(y * y, 1)                                       # [K, n]
    const = jnp.log(params.weights) - half_log_det - 0.5 * d * math.log(2.0 * math.pi)
    return const[:, None] - 0.5 * quad, diff


def _normalise(joint):
    """(per-point log-likelihood [n], responsibilities [K, n]) from joint log densities [K, n]."""
    top = jnp.max(joint, 0)
    e = jnp.exp(joint - top[None])
    total = jnp.sum(e, 0)
    return top + jnp.log(total), e / total[None]


def component_log_prob(x, means, covs):
    """log N(x_n; mean_k, cov_k) as [n, K] (x [n, d])."""
    K = means.shape[0]
    ones = jnp.full((K,), 1.0, x.dtype)
    return _joint_t(MixtureParams(ones, means, covs), x.T)[0].T


def point_log_prob(params: MixtureParams, x):
    """log p(x_n) under the mixture, [n] (x [n, d])."""
    return _normalise(_joint_t(params, x.T)[0])[0]


def mean_log_lik(params: MixtureParams, xt, w):
    """Mean weighted log-likelihood of the points xt [d, n]."""
    return jnp.sum(w * _normalise(_joint_t(params, xt)[0])[0]) / jnp.sum(w)


# ------------------------------------------------------------------ M-step
def _eps(dtype):
    return jnp.finfo(dtype).eps


def _stored_covs(second, covariance, reg_covar):
    """Second moments (full [K, d, d] or variances [K, d]) -> stored full [K, d, d] with reg_covar."""
    if covariance == "full":
        d = second.shape[-1]
        return second + reg_covar * jnp.eye(d, dtype=second.dtype)
    d = second.shape[-1]
    var = second + reg_covar
    if covariance == "spherical":
        var = jnp.broadcast_to(jnp.mean(var, -1, keepdims=True), var.shape)
    return var[..., :, None] * jnp.eye(d, dtype=var.dtype)


class Fallback(NamedTuple):
    """What an emptied component is re-seeded with (computed once per fit)."""

    covs: jax.Array     # [K, d, d] the training set's weighted covariance (+ reg_covar), shaped by type
    offsets: jax.Array  # [K, d] component k starts at the worst point + (k / K) * the data's std per axis


def fallback(xt, w, K: int, covariance: str, reg_covar) -> Fallback:
    d, n = xt.shape
    total = jnp.sum(w)
    centred = xt - (jnp.sum(w[None] * xt, 1) / total)[:, None]
    if covariance == "full":
        second = jnp.einsum("n,dn,en->de", w, centred, centred) / total
    else:
        second = jnp.sum(w[None] * centred * centred, 1) / total
    covs = jnp.broadcast_to(_stored_covs(second[None], covariance, reg_covar), (K, d, d))
    std = jnp.sqrt(jnp.diagonal(covs[0]))
    offsets = (jnp.arange(K, dtype=xt.dtype) / K)[:, None] * std[None, :]
    return Fallback(covs, offsets)


class Moments(NamedTuple):
    """An M-step's result before empty components are re-seeded."""

    means: jax.Array   # [K, d]
    covs: jax.Array    # [K, d, d] with reg_covar
    nk: jax.Array      # [K] total responsibility + 10 eps
    nk_raw: jax.Array  # [K] total responsibility


def m_step_from(shift, xt, w, resp, badness, fb: Fallback, covariance: str, reg_covar):
    """Weighted M-step from responsibilities resp [K, n], re-seeding empty components.

    badness [n]: how badly each point is explained (the worst one seeds an emptied component).
    """
    m = _moments(shift, xt, w, resp, covariance, reg_covar)
    return _reseed(m, w, _worst_of(xt, w, badness), fb)


def _moments(shift, xt, w, resp, covariance: str, reg_covar) -> Moments:
    """Weighted M-step moments: means about `shift` [K, d] (any value gives the same result in exact
    arithmetic; the current means keep float32 cancellation small), covariances about the new means
    (a second pass, as scikit-learn: never negative)."""
    d, n = xt.shape
    resp.shape[0]
    dtype = xt.dtype
    diff = xt[None, :, :] - shift[:, :, None]                      # [K, d, n]
    rw = resp * w[None, :]                                          # [K, n]
    nk_raw = jnp.sum(rw, 1)
    nk = nk_raw + 10 * _eps(dtype)
    first = jnp.sum(rw[:, None, :] * diff, 2) / nk[:, None]         # [K, d]  mean - shift
    means = shift + first
    diff = xt[None, :, :] - means[:, :, None]                      # about the new means
    if covariance == "full":
        if d <= _SMALL_DIM:
            second = jnp.sum(rw[:, None, None, :] * diff[:, :, None, :] * diff[:, None, :, :], 3)
        else:
            second = jnp.einsum("kdn,ken->kde", rw[:, None, :] * diff, diff)
        second = second / nk[:, None, None]
    else:
        second = jnp.sum(rw[:, None, :] * diff * diff, 2) / nk[:, None]
    return Moments(means, _stored_covs(second, covariance, reg_covar), nk, nk_raw)


def _empty(m: Moments, w):
    """[K] components that lost all their points."""
    return m.nk_raw <= _eps(w.dtype) * jnp.sum(w)


def _worst_of(xt, w, badness):
    """The training point [d] with the highest badness (the argmax is a whole pass over the points)."""
    return xt[:, jnp.argmax(jnp.where(w > 0, badness, -jnp.inf))]


def _worst_point(theta: MixtureParams, xt, w):
    """The training point worst explained by theta (lowest mixture log-likelihood)."""
    return _worst_of(xt, w, -_normalise(_joint_t(theta, xt)[0])[0])


def _reseed(m: Moments, w, worst, fb: Fallback) -> MixtureParams:
    """Components that lost all their points restart at the worst point `worst` [d] (deterministic: no key)."""
    K = m.means.shape[0]
    total = jnp.sum(w)
    empty = _empty(m, w)
    seeds = worst[None, :] + fb.offsets                              # distinct when several are empty
    means = jnp.where(empty[:, None], seeds, m.means)
    covs = jnp.where(empty[:, None, None], fb.covs, m.covs)
    nk = jnp.where(empty, total / K, m.nk)
    return MixtureParams(nk / jnp.sum(nk), means, covs)


_UNROLL_DIM = 3  # up to this d, em_step is written per coordinate (each sum a fused reduction, ~3x faster on CPU)


def _em_update_unrolled(theta: MixtureParams, xt, w, covariance: str, reg_covar):
    """_em_update with every per-point quantity an [n] array and every M-step moment its own reduction."""
    K, d = theta.means.shape
    dtype = xt.dtype
    chol = _cholesky(theta.covs)
    inv_chol = _inv_lower(chol)
    const = (jnp.log(theta.weights) - jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
             - 0.5 * d * math.log(2.0 * math.pi))
    rows = [xt[a] for a in range(d)]
    diffs, joints = [], []
    for k in range(K):
        diff = [rows[a] - theta.means[k, a] for a in range(d)]
        quad = 0.0
        for e in range(d):
            y = sum(inv_chol[k, e, a] * diff[a] for a in range(e + 1))
            quad = quad + y * y
        diffs.append(diff)
        joints.append(const[k] - 0.5 * quad)
    if K == 2:  # one exp per point: the larger joint's term is exp(0) = 1
        gap = joints[1] - joints[0]
        small = jnp.exp(-jnp.abs(gap))
        total = 1.0 + small
        per_point = jnp.maximum(joints[0], joints[1]) + jnp.log1p(small)
        expd = [jnp.where(gap > 0, small, 1.0), jnp.where(gap > 0, 1.0, small)]
    else:
        top = joints[0]
        for joint in joints[1:]:
            top = jnp.maximum(top, joint)
        expd = [jnp.exp(joint - top) for joint in joints]
        total = sum(expd)
        per_point = top + jnp.log(total)
    ll = jnp.sum(w * per_point) / jnp.sum(w)
    w_over_total = w / total
    pairs = [(a, b) for a in range(d) for b in range(a, d)] if covariance == "full" else [(a, a) for a in range(d)]
    rws = [e * w_over_total for e in expd]
    nk_raw = jnp.stack([jnp.sum(rw) for rw in rws])
    nk = nk_raw + 10 * _eps(dtype)
    first = jnp.asarray([[jnp.sum(rw * diffs[k][a]) for a in range(d)] for k, rw in enumerate(rws)]) / nk[:, None]
    means = theta.means + first                                      # [K, d]
    # second moments about the new means (two passes, as scikit-learn): E[x^2] - mean^2 about the
    # old means cancels in float32 when a component moves far for its width, and can go negative
    second = []
    for k, rw in enumerate(rws):
        centred = [rows[a] - means[k, a] for a in range(d)]
        second.append([jnp.sum(rw * centred[a] * centred[b]) for a, b in pairs])
    second = jnp.asarray(second) / nk[:, None]
    if covariance == "full":
        rows_i, cols_i = np.array(pairs).T
        moments = jnp.zeros((K, d, d), dtype).at[:, rows_i, cols_i].set(second).at[:, cols_i, rows_i].set(second)
    else:
        moments = second
    return ll, Moments(means, _stored_covs(moments, covariance, reg_covar), nk, nk_raw)


def _em_update(theta: MixtureParams, xt, w, covariance: str, reg_covar):
    """E-step at theta and M-step: (mean log-likelihood at theta, Moments before re-seeding)."""
    if xt.shape[0] <= _UNROLL_DIM:
        return _em_update_unrolled(theta, xt, w, covariance, reg_covar)
    per_point, resp = _normalise(_joint_t(theta, xt)[0])
    return jnp.sum(w * per_point) / jnp.sum(w), _moments(theta.means, xt, w, resp, covariance, reg_covar)


def em_step(theta: MixtureParams, xt, w, fb: Fallback, covariance: str, reg_covar):
    """One EM iteration: (mean log-likelihood at theta, next theta).

    The worst point (an argmax over the points, ~45% of an iteration) is found only when a
    component is empty, under a lax.cond (a real branch for one chain; vmap turns it into a select,
    so the batched EM uses batched_em_step, which branches once for the whole batch).
    """
    ll, m = _em_update(theta, xt, w, covariance, reg_covar)
    worst = jax.lax.cond(jnp.any(_empty(m, w)), lambda: _worst_point(theta, xt, w),
                         lambda: jnp.zeros(xt.shape[:1], xt.dtype))
    return ll, _reseed(m, w, worst, fb)


def batched_em_step(theta: MixtureParams, xt, w, fb: Fallback, covariance: str, reg_covar):
    """em_step over a batch (leading axis on every argument), equal to it lane by lane."""
    ll, m = jax.vmap(lambda t, x, w_, r: _em_update(t, x, w_, covariance, r))(theta, xt, w, reg_covar)
    worst = jax.lax.cond(jnp.any(jax.vmap(_empty)(m, w)), lambda: jax.vmap(_worst_point)(theta, xt, w),
                         lambda: jnp.zeros(xt.shape[:2], xt.dtype))
    return ll, jax.vmap(_reseed)(m, w, worst, fb)


# ------------------------------------------------------------------ EM loop
def em(params: MixtureParams, x, w, *, tol, max_iter: int, covariance: str, reg_covar) -> EMResult:
    """EM from `params` on x [n, d] until |change in mean log-likelihood| < tol or max_iter M-steps.

    Written for vmap. One chain: a lax.while_loop. Under vmap (a custom_vmap rule): each lane
    runs exactly the one-chain recurrence, and a finished lane is frozen (a select on `done`),
    so a converged chain keeps its result while others iterate and equals the chain fitted
    alone; and the batch is compacted as it finishes - when half the lanes of a stage are done,
    the still-running ones are gathered into a batch half as large (a quarter below 16 lanes) - so
    a few slow chains do not make every chain pay for their iterations (counts are heavy-tailed).
    """
    dtype = x.dtype
    return _em_program(max_iter, covariance)(params, x, jnp.asarray(w, dtype), jnp.asarray(tol, dtype),
                                             jnp.asarray(reg_covar, dtype))


class _LoopState(NamedTuple):
    n_iter: jax.Array     # [] or [B] int32
    theta: MixtureParams
    prev_ll: jax.Array    # mean log-likelihood before the last M-step (sklearn's lower bound)
    done: jax.Array       # converged


def _advance(state: _LoopState, step, tol, max_iter: int) -> _LoopState:
    """One EM iteration for every lane that is still running; finished lanes are left unchanged."""
    ll, new = step(state.theta)
    frozen = state.done | (state.n_iter >= max_iter)
    converged = jnp.abs(ll - state.prev_ll) < tol

    def keep(old, upd):
        mask = frozen.reshape(frozen.shape + (1,) * (upd.ndim - frozen.ndim))
        return jnp.where(mask, old, upd)

    return _LoopState(keep(state.n_iter, state.n_iter + 1), jax.tree_util.tree_map(keep, state.theta, new),
                      keep(state.prev_ll, ll), state.done | (~frozen & converged))


def _start_state(params: MixtureParams, batch_shape=()) -> _LoopState:
    dtype = params.means.dtype
    return _LoopState(jnp.zeros(batch_shape, jnp.int32), params, jnp.full(batch_shape, -jnp.inf, dtype),
                      jnp.zeros(batch_shape, bool))


def _result(state: _LoopState) -> EMResult:
    return EMResult(state.theta, state.n_iter, state.done, state.prev_ll)


def _stage_sizes(B: int) -> list[int]:
    """Lane counts of the compaction stages: four halvings (less idle work in the masked lanes of
    the big early stages, where most lane-iterations are), then quarters (every stage is compiled
    on its own: few small ones keep compile time down; 10 stages at 10,000 chains, 7 at 256).

    With the paper's iteration counts (median 33, p99 187, max 365 at 256 chains) halving cuts the
    modelled EM time per generation by ~20% against quarters.
    """
    sizes = [B]
    while sizes[-1] > 1:
        size = sizes[-1]
        halve = size > 16 and len(sizes) <= 4
        sizes.append((size + 1) // 2 if halve else (size + 3) // 4)
    return sizes


@functools.lru_cache(maxsize=None)
def _em_program(max_iter: int, covariance: str):
    """The EM loop for one static setting, with its batching rule (compaction)."""

    def single(params, x, w, tol, reg_covar):
        xt = x.T
        fb = fallback(xt, w, params.weights.shape[0], covariance, reg_covar)
        step = lambda theta: em_step(theta, xt, w, fb, covariance, reg_covar)  # noqa: E731

        def cond(state):
            return ~state.done & (state.n_iter < max_iter)

        return _result(jax.lax.while_loop(cond, lambda st: _advance(st, step, tol, max_iter), _start_state(params)))

    program = jax.custom_batching.custom_vmap(single)

    @program.def_vmap
    def batched(axis_size, in_batched, params, x, w, tol, reg_covar):
        B = axis_size
        args = (params, x, w, tol, reg_covar)
        params, x, w, tol, reg_covar = jax.tree_util.tree_map(
            lambda a, b: a if b else jnp.broadcast_to(a, (B,) + jnp.shape(a)), args, tuple(in_batched))
        K = params.weights.shape[-1]
        xt = jnp.swapaxes(x, -1, -2)                                    # [B, d, n]
        fb = jax.vmap(lambda xt_, w_, r_: fallback(xt_, w_, K, covariance, r_))(xt, w, reg_covar)
        state = _start_state(params, (B,))

        sizes = _stage_sizes(B)
        lanes = jnp.arange(B)
        for stage, size in enumerate(sizes):
            nxt = sizes[stage + 1] if stage + 1 < len(sizes) else 0
            take = lambda a: a[lanes]  # noqa: E731
            sub_xt, sub_w, sub_fb, sub_tol, sub_reg = jax.tree_util.tree_map(take, (xt, w, fb, tol, reg_covar))
            step_sub = lambda theta: batched_em_step(theta, sub_xt, sub_w, sub_fb, covariance, sub_reg)  # noqa: E731

            def running(st):
                return ~st.done & (st.n_iter < max_iter)

            sub = jax.lax.while_loop(lambda st: jnp.sum(running(st)) > nxt,
                                     lambda st: _advance(st, step_sub, sub_tol, max_iter),
                                     jax.tree_util.tree_map(take, state))
            state = jax.tree_util.tree_map(lambda full, part: full.at[lanes].set(part), state, sub)
            if nxt:  # the still-running lanes (they number <= nxt) move on; the rest are final
                order = jnp.argsort(~running(sub), stable=True)
                lanes = lanes[order[:nxt]]
        out = _result(state)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return program


def em_trace(params: MixtureParams, x, w, *, n_steps: int, covariance: str, reg_covar):
    """n_steps plain EM steps (no stopping); (final params, mean log-likelihood before each step [n_steps])."""
    xt = x.T
    fb = fallback(xt, w, params.weights.shape[0], covariance, reg_covar)

    def step(theta, _):
        ll, new = em_step(theta, xt, w, fb, covariance, reg_covar)
        return new, ll

    return jax.lax.scan(step, params, None, length=n_steps)


# ------------------------------------------------------------------ sampling
def _pick(key, cumulative, shape=()):
    """Indices drawn with probability proportional to the increments of `cumulative` [m] (inverse CDF).

    One uniform per draw (a categorical by Gumbel-max costs m per draw). Zero increments are
    never picked; a uniform that rounds up to the total takes the last positive increment.
    """
    return _inverse_cdf(jax.random.uniform(key, shape, cumulative.dtype) * cumulative[-1], cumulative)


def _inverse_cdf(u, cumulative):
    """The first index whose cumulative exceeds u, at most the last positive increment's."""
    return jnp.minimum(jnp.sum(cumulative <= u[..., None], -1), jnp.argmax(cumulative))


def sample_mixture(key, params: MixtureParams, n: int):
    """n exact draws [n, d] from the mixture: a component per point, then mean + L z.

    Draws n uniforms and n * d normals (numpyro's MixtureSameFamily draws every component for every
    point and a Gumbel categorical: ~2K times the random numbers, and LAPACK Cholesky calls).
    """
    K, d = params.means.shape
    k_comp, k_z = jax.random.split(key)
    comp = _pick(k_comp, jnp.cumsum(params.weights), (n,))            # [n]
    z = jax.random.normal(k_z, (d, n), params.means.dtype)
    chol = _cholesky(params.covs)
    if K > 8:  # a gather; below, K selects that XLA fuses with the rest
        return params.means[comp] + jnp.einsum("nde,en->nd", chol[comp], z)
    rows = []
    for a in range(d):
        row = jnp.zeros((n,), z.dtype)
        for k in range(K):
            value = params.means[k, a] + sum(chol[k, a, b] * z[b] for b in range(a + 1))
            row = jnp.where(comp == k, value, row)
        rows.append(row)
    return jnp.stack(rows, -1)


# ------------------------------------------------------------------ initialisation
def _sq_dist_t(xt, centres):
    """Squared distances [K, n] from centres [K, d] to points xt [d, n]."""
    return jnp.sum((xt[None, :, :] - centres[:, :, None]) ** 2, 1)


def kmeans_plus_plus(key, xt, w, K: int):
    """k-means++ seeding (one candidate per step), weighted: P(pick n) proportional to w_n D_n^2."""
    keys = jax.random.split(key, K)
    first = _pick(keys[0], jnp.cumsum(w))
    centres = jnp.zeros((K, xt.shape[0]), xt.dtype).at[0].set(xt[:, first])
    d2 = jnp.sum((xt - xt[:, first][:, None]) ** 2, 0)
    for k in range(1, K):
        # all remaining distances zero (collapsed data): pick by weight alone
        wd2 = w * d2
        pick = _pick(keys[k], jnp.cumsum(jnp.where(jnp.sum(wd2) > 0, wd2, w)))
        centres = centres.at[k].set(xt[:, pick])
        d2 = jnp.minimum(d2, jnp.sum((xt - xt[:, pick][:, None]) ** 2, 0))
    return centres


def lloyd(centres, xt, w, n_iter: int):
    """n_iter weighted Lloyd iterations; an empty cluster keeps its centre."""
    K = centres.shape[0]

    d = xt.shape[0]

    def sums(c):
        """(counts [K], coordinate sums [K, d]) of the points nearest each centre (ties: lowest k)."""
        if d > _UNROLL_DIM:
            member = jax.nn.one_hot(jnp.argmin(_sq_dist_t(xt, c), 0), K, dtype=xt.dtype, axis=0) * w[None]
            return jnp.sum(member, 1), jnp.sum(member[:, None, :] * xt[None], 2)
        # per coordinate, a running minimum over the centres: every sum one fused reduction
        # (an argmin over K and one-hot [K, d, n] products cost ~2x more on CPU)
        best, label = None, None
        for k in range(K):
            d2 = sum((xt[a] - c[k, a]) ** 2 for a in range(d))
            if k == 0:
                best, label = d2, jnp.zeros(d2.shape, jnp.int32)
            else:
                closer = d2 < best
                best, label = jnp.where(closer, d2, best), jnp.where(closer, k, label)
        member = [jnp.where(label == k, w, 0.0) for k in range(K)]
        counts = jnp.stack([jnp.sum(m) for m in member])
        return counts, jnp.asarray([[jnp.sum(m * xt[a]) for a in range(d)] for m in member])

    def step(_, c):
        counts, total = sums(c)
        new = total / jnp.where(counts > 0, counts, 1.0)[:, None]
        return jnp.where((counts > 0)[:, None], new, c)

    return jax.lax.fori_loop(0, n_iter, step, centres)


def init_kmeans(key, x, w, K: int, kmeans_iter: int, covariance: str, reg_covar) -> MixtureParams:
    """sklearn's default 'kmeans' init, approximated: k-means++ seeds, kmeans_iter Lloyd steps,
    hard labels as responsibilities, one M-step."""
    xt = x.T
    centres = lloyd(kmeans_plus_plus(key, xt, w, K), xt, w, kmeans_iter)
    d2 = _sq_dist_t(xt, centres)
    resp = jax.nn.one_hot(jnp.argmin(d2, 0), K, dtype=x.dtype, axis=0)
    fb = fallback(xt, w, K, covariance, reg_covar)
    return m_step_from(centres, xt, w, resp, jnp.min(d2, 0), fb, covariance, reg_covar)


def init_random(key, x, w, K: int, covariance: str, reg_covar) -> MixtureParams:
    """sklearn's 'random' init: uniform random responsibilities, normalised per point, one M-step."""
    xt = x.T
    resp = jax.random.uniform(key, (K, x.shape[0]), x.dtype)
    resp = resp / jnp.sum(resp, 0, keepdims=True)
    centre = jnp.sum(w[None] * xt, 1) / jnp.sum(w)
    fb = fallback(xt, w, K, covariance, reg_covar)
    badness = jnp.sum((xt - centre[:, None]) ** 2, 0)
    return m_step_from(jnp.broadcast_to(centre, (K, x.shape[1])), xt, w, resp, badness, fb, covariance, reg_covar)
