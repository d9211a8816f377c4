"""The mini-batch training loop the neural families share (VAE, Transformer): optax steps in one
``lax.scan``, pure, so a whole fit vmaps over chains and runs inside the engine's scan over
generations.

Two ways to form mini-batches from weighted points (x [n, ...], w [n] >= 0):

    weighted_draws(n_steps, batch_size)  every step draws batch_size indices with replacement,
        with probability proportional to w (the VAE's scheme); the loss sees weights 1.
    epochs(n_epochs, batch_size)         every epoch is a fresh random order of the n points cut
        into n // batch_size batches (what is left over sits the epoch out); zero-weight points come
        last in every order, the loss weighs each point by w, and a batch of zero-weight points only
        is no step at all (the optimiser's state stays as it was; its loss is recorded as NaN). So a
        dropped point (w = 0) counts for nothing: with n // batch_size unchanged, appending one equals
        leaving it out, bit for bit; and a training set of n slots holding m points (fresh_real's 2n
        slots for n points) trains like the m points alone, at the compute of the n slots.

The loss is ``loss_fn(params, key, batch_x, batch_w) -> scalar``, its key the step's own.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcollapse import _checks


class Batches(NamedTuple):
    """How a fit forms its mini-batches (static: shapes only)."""

    kind: str          # "weighted_draws" | "epochs"
    n: int             # steps (weighted_draws) or epochs (epochs)
    batch_size: int

    def n_steps(self, n_points: int) -> int:
        return self.n if self.kind == "weighted_draws" else self.n * (n_points // self.batch_size)


def weighted_draws(n_steps: int, batch_size: int) -> Batches:
    return Batches("weighted_draws", n_steps, batch_size)


def epochs(n_epochs: int, batch_size: int) -> Batches:
    return Batches("epochs", n_epochs, batch_size)


def train(loss_fn: Callable, params: Any, optimiser: optax.GradientTransformation, key, x, w,
          batches: Batches) -> tuple[Any, jax.Array]:
    """Run the optimiser over mini-batches of (x, w); returns (params, loss of every step [n_steps])."""
    w = jnp.asarray(w)
    if batches.kind == "weighted_draws":
        step_keys = jax.random.split(key, batches.n)
        xs, pick = step_keys, _draw_by_weight(w, batches.batch_size)
    elif batches.kind == "epochs":
        k_order, k_steps = jax.random.split(key)
        index = _shuffled_batches(k_order, w.shape[0], w, batches)
        xs = (index, jax.random.split(k_steps, index.shape[0]))
        pick = _given_index
    else:
        raise ValueError(f"batches.kind must be 'weighted_draws' or 'epochs', got {batches.kind!r}")

    def step(carry, step_input):
        p, opt_state = carry
        idx, k_loss, batch_w = pick(step_input)
        batch_x = jax.tree_util.tree_map(lambda a: a[idx], x)
        batch_w = batch_w(w, idx)
        value, grads = jax.value_and_grad(loss_fn)(p, k_loss, batch_x, batch_w)
        updates, new_state = optimiser.update(grads, opt_state, p)
        new_p = optax.apply_updates(p, updates)
        if batches.kind == "weighted_draws":  # every drawn batch holds points
            return (new_p, new_state), value
        # an all-zero-weight batch is no step: without this, Adam's momentum would keep moving the params
        active = jnp.sum(batch_w) > 0
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
        carry = (jax.tree_util.tree_map(keep, new_p, p), jax.tree_util.tree_map(keep, new_state, opt_state))
        return carry, jnp.where(active, value, jnp.nan)

    (params, _), losses = jax.lax.scan(step, (params, optimiser.init(params)), xs)
    return params, losses


def weighted_mean(values, w) -> jax.Array:
    """sum(w * values) / sum(w): a batch's loss under point weights (0 for an all-zero batch)."""
    return jnp.sum(w * values) / jnp.maximum(jnp.sum(w), 1e-30)


def _draw_by_weight(w, batch_size: int):
    cdf = jnp.cumsum(w)
    n = w.shape[0]

    def pick(k):
        k_batch, k_loss = jax.random.split(k)
        # draw with probability proportional to w by inverting the CDF: O(batch log n),
        # and zero-weight points (empty intervals) are never drawn
        u = jax.random.uniform(k_batch, (batch_size,), cdf.dtype) * cdf[-1]
        idx = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, n - 1)
        return idx, k_loss, lambda w, idx: jnp.ones(batch_size, w.dtype)

    return pick


def _given_index(step_input):
    idx, k_loss = step_input
    return idx, k_loss, lambda w, idx: w[idx]


def check_batch_fits(batch_size: int, n_samples: int, points: str) -> None:
    """The families' check_settings: n_samples a positive int, and a batch no larger than one generation's
    training set (`points` names them in the message: "images", "blocks")."""
    _checks.positive_int("n_samples", n_samples)
    if batch_size > n_samples:
        raise ValueError(f"batch_size ({batch_size}) must be <= n_samples ({n_samples}), "
                         f"the number of training {points} per generation")

def _shuffled_batches(key, n: int, w, batches: Batches) -> jax.Array:
    """[n_epochs * (n // batch_size), batch_size] point indices: one random order per epoch.

    Each point's sort key is drawn from fold_in(epoch key, its index), so appended points leave the
    others' keys alone; zero-weight points sort last.
    """
    per_epoch = n // batches.batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size ({batches.batch_size}) must be <= the number of training points ({n})")

    def order(k):
        u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(k, i)))(jnp.arange(n))
        return jnp.argsort(jnp.where(w > 0, u, jnp.inf))

    orders = jax.vmap(order)(jax.random.split(key, batches.n))
    return orders[:, : per_epoch * batches.batch_size].reshape(-1, batches.batch_size)


def plateaued(losses: jax.Array) -> jax.Array:
    """Whether training reached a plateau: the mean loss of the last tenth of the steps is not lower than
    that of the tenth before it by more than 2 standard errors (True for runs too short to tell).
    Steps that were skipped (NaN losses: batches without points) are left out of both tenths."""
    m = max(losses.shape[0] // 10, 1)
    if losses.shape[0] < 2 * m or m < 2:
        return jnp.asarray(True)
    last, before = _steps(losses[-m:]), _steps(losses[-2 * m:-m])
    se = jnp.sqrt(last.var / last.count + before.var / before.count)
    return ~((before.mean - last.mean) > 2.0 * se)   # not a clear improvement (also when a tenth had no step)


def mean_loss(losses: jax.Array) -> jax.Array:
    """Mean of the steps taken (NaN losses are skipped steps); NaN if none was taken."""
    return _steps(losses).mean


class _Steps(NamedTuple):
    count: jax.Array
    mean: jax.Array
    var: jax.Array


def _steps(losses):
    taken = ~jnp.isnan(losses)
    count = jnp.sum(taken)
    mean = jnp.sum(jnp.where(taken, losses, 0.0)) / count
    var = jnp.sum(jnp.where(taken, (losses - mean) ** 2, 0.0)) / count
    return _Steps(count, mean, var)
