"""The EM loop: from a starting mixture to |change in mean log-likelihood| < tol or max_iter M-steps."""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcollapse.families.base import one_off
from jaxcollapse.families.em.densities import MixtureParams
from jaxcollapse.families.em.mstep import Fallback, fallback
from jaxcollapse.families.em.slots import schedule, slotted_while
from jaxcollapse.families.em.step import batched_em_step, em_step
from jaxcollapse.native import em as native_em


class EMResult(NamedTuple):
    params: MixtureParams
    n_iter: jax.Array      # int32: M-steps done (sklearn's n_iter_)
    converged: jax.Array   # bool


def em(params: MixtureParams, x, w, *, tol, max_iter: int, covariance: str, reg_covar) -> EMResult:
    """EM from `params` on x [n, d] until |change in mean log-likelihood| < tol or max_iter M-steps.

    Written for vmap. One chain: a lax.while_loop. Under vmap (a custom_vmap rule): each lane
    runs exactly the one-chain recurrence, a finished lane is frozen (a select on `done`), so a
    converged chain keeps its result while others iterate and equals the chain fitted alone; and
    lanes are queued through a block of slots and the rest compacted as they finish (slots.py).
    On a CPU, for d <= 3 and K <= 4, the loop is one native call instead (jaxcollapse/native), each
    chain iterating alone: the same recurrence, its sums rounded differently.
    """
    dtype = x.dtype
    native = native_em.usable(*jnp.shape(params.means)[-2:], dtype)  # in the program's key: never a stale trace
    return _em_program(max_iter, covariance, native)(params, x, jnp.asarray(w, dtype), jnp.asarray(tol, dtype),
                                                     jnp.asarray(reg_covar, dtype))


class LoopState(NamedTuple):
    n_iter: jax.Array     # [] or [B] int32
    theta: MixtureParams
    prev_ll: jax.Array    # mean log-likelihood before the last M-step (sklearn's lower bound)
    done: jax.Array       # converged


def advance(state: LoopState, step, tol, max_iter: int) -> LoopState:
    """One EM iteration for every lane that is still running; finished lanes are left unchanged."""
    ll, new = step(state.theta)
    frozen = state.done | (state.n_iter >= max_iter)
    converged = jnp.abs(ll - state.prev_ll) < tol

    def keep(old, upd):
        mask = frozen.reshape(frozen.shape + (1,) * (upd.ndim - frozen.ndim))
        return jnp.where(mask, old, upd)

    return LoopState(keep(state.n_iter, state.n_iter + 1), jax.tree_util.tree_map(keep, state.theta, new),
                     keep(state.prev_ll, ll), state.done | (~frozen & converged))


def running(state: LoopState, max_iter: int):
    return ~state.done & (state.n_iter < max_iter)


def start_state(params: MixtureParams, batch_shape=()) -> LoopState:
    dtype = params.means.dtype
    return LoopState(jnp.zeros(batch_shape, jnp.int32), params, jnp.full(batch_shape, -jnp.inf, dtype),
                     jnp.zeros(batch_shape, bool))


def result(state: LoopState) -> EMResult:
    return EMResult(state.theta, state.n_iter, state.done)


@functools.lru_cache(maxsize=None)
def _em_program(max_iter: int, covariance: str, native: bool):
    """The EM loop for one static setting, with its batching rule (compaction), or the native loop."""

    def native_loop(params, xt, w, fb, tol, reg_covar):
        fitted, n_iter, converged = native_em.em_loop(params, xt, w, fb, tol, reg_covar, max_iter=max_iter,
                                                      covariance=covariance)
        return EMResult(MixtureParams(*fitted), n_iter, converged)

    def single(params, x, w, tol, reg_covar):
        xt = x.T
        fb = fallback(xt, w, params.weights.shape[0], covariance, reg_covar)
        if native:
            return native_loop(params, xt, w, fb, tol, reg_covar)
        step = lambda theta: em_step(theta, xt, w, fb, covariance, reg_covar)  # noqa: E731
        final = jax.lax.while_loop(lambda st: running(st, max_iter), lambda st: advance(st, step, tol, max_iter),
                                   start_state(params))
        return result(final)

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
        if native:
            out = native_loop(params, xt, w, fb, tol, reg_covar)
            return out, jax.tree_util.tree_map(lambda _: True, out)

        def step(state, lane_args):
            xt_, w_, fb_, tol_, reg_ = lane_args
            em_batch = lambda theta: batched_em_step(theta, xt_, w_, fb_, covariance, reg_)  # noqa: E731
            return advance(state, em_batch, tol_, max_iter)

        final, _ = slotted_while(step, lambda st: running(st, max_iter), start_state(params, (B,)),
                                 (xt, w, fb, tol, reg_covar), *schedule(B, jax.default_backend(), one_off()))
        out = result(final)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return program


class LaneData(NamedTuple):
    """One chain's EM data (fixed while it iterates): what a pipelined run carries per lane besides the state."""

    xt: jax.Array         # [d, n]
    w: jax.Array          # [n]
    fb: Fallback


def lane_begin(params: MixtureParams, x, w, covariance: str, reg_covar) -> tuple[LoopState, LaneData]:
    """EM from `params` on x [n, d], not yet stepped (one lane; vmap it)."""
    xt = x.T
    return start_state(params), LaneData(xt, w, fallback(xt, w, params.weights.shape[0], covariance, reg_covar))


def lanes_step(state: LoopState, data: LaneData, *, tol, max_iter: int, covariance: str, reg_covar) -> LoopState:
    """One EM iteration of a batch of lanes (leading axis); a finished lane is left unchanged.
    Lane by lane the recurrence of em(), so a lane stepped to its end equals em() on it."""
    B = data.w.shape[0]
    dtype = data.xt.dtype
    reg = jnp.full((B,), reg_covar, dtype)
    step = lambda theta: batched_em_step(theta, data.xt, data.w, data.fb, covariance, reg)  # noqa: E731
    return advance(state, step, jnp.asarray(tol, dtype), max_iter)


def em_trace(params: MixtureParams, x, w, *, n_steps: int, covariance: str, reg_covar):
    """n_steps plain EM steps (no stopping); (final params, mean log-likelihood before each step [n_steps])."""
    xt = x.T
    fb = fallback(xt, w, params.weights.shape[0], covariance, reg_covar)

    def step(theta, _):
        ll, new = em_step(theta, xt, w, fb, covariance, reg_covar)
        return new, ll

    return jax.lax.scan(step, params, None, length=n_steps)
