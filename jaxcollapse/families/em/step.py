"""One EM iteration (E-step at theta, M-step), for one chain and for a batch of chains."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcollapse.families.em.densities import UNROLL_DIM, MixtureParams, joint_rows, joint_t, normalise, normalise_rows
from jaxcollapse.families.em.mstep import Fallback, empty, moments, moments_unrolled, reseed, worst_point


def em_update_unrolled(theta: MixtureParams, xt, w, covariance: str, reg_covar):
    """em_update with every per-point quantity an [n] array and the M-step's sums as one product each pass."""
    per_point, expd, total = normalise_rows(joint_rows(theta, xt))
    w_over_total = w / total
    (ll_sum,), m = moments_unrolled(theta.means, xt, w, [e * w_over_total for e in expd], covariance, reg_covar,
                                    lead=[w * per_point])
    return ll_sum / m.total, m


def em_update(theta: MixtureParams, xt, w, covariance: str, reg_covar):
    """E-step at theta and M-step: (mean log-likelihood at theta, Moments before re-seeding)."""
    if xt.shape[0] <= UNROLL_DIM:
        return em_update_unrolled(theta, xt, w, covariance, reg_covar)
    per_point, resp = normalise(joint_t(theta, xt)[0])
    return jnp.sum(w * per_point) / jnp.sum(w), moments(theta.means, xt, w, resp, covariance, reg_covar)


def em_step(theta: MixtureParams, xt, w, fb: Fallback, covariance: str, reg_covar):
    """One EM iteration: (mean log-likelihood at theta, next theta).

    The worst point (a whole pass over the points) is found only when a
    component is empty, under a lax.cond (a real branch for one chain; vmap turns it into a select,
    so the batched EM uses batched_em_step, which branches once for the whole batch).
    """
    ll, m = em_update(theta, xt, w, covariance, reg_covar)
    worst = jax.lax.cond(jnp.any(empty(m)), lambda: worst_point(theta, xt, w),
                         lambda: jnp.zeros(xt.shape[:1], xt.dtype))
    return ll, reseed(m, worst, fb)


def batched_em_step(theta: MixtureParams, xt, w, fb: Fallback, covariance: str, reg_covar):
    """em_step over a batch (leading axis on every argument), equal to it lane by lane."""
    ll, m = jax.vmap(lambda t, x, w_, r: em_update(t, x, w_, covariance, r))(theta, xt, w, reg_covar)
    worst = jax.lax.cond(jnp.any(jax.vmap(empty)(m)), lambda: jax.vmap(worst_point)(theta, xt, w),
                         lambda: jnp.zeros(xt.shape[:2], xt.dtype))
    return ll, jax.vmap(reseed)(m, worst, fb)
