"""The mini-batch training loop the neural families share (VAE, Transformer): optax steps in one
``lax.scan``, pure, so a whole fit vmaps over chains and runs inside the engine's scan over
generations.

Two ways to form mini-batches from weighted points (x [n, ...], w [n] >= 0):

    weighted_draws(n_steps, batch_size)  every step draws batch_size indices with replacement,
        with probability proportional to w (the VAE's scheme); the loss sees weights 1.
    epochs(n_epochs, batch_size)         every epoch is a fresh permutation of the n points cut
        into n // batch_size batches (the remainder sits the epoch out); the loss sees each point's
        weight, so a dropped point (w = 0) counts for nothing.

The loss is ``loss_fn(params, key, batch_x, batch_w) -> scalar``, its key the step's own.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


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
        index = _shuffled_batches(k_order, w.shape[0], batches)
        xs = (index, jax.random.split(k_steps, index.shape[0]))
        pick = _given_index
    else:
        raise ValueError(f"batches.kind must be 'weighted_draws' or 'epochs', got {batches.kind!r}")

    def step(carry, step_input):
        p, opt_state = carry
        idx, k_loss, batch_w = pick(step_input)
        batch_x = jax.tree_util.tree_map(lambda a: a[idx], x)
        value, grads = jax.value_and_grad(loss_fn)(p, k_loss, batch_x, batch_w(w, idx))
        updates, opt_state = optimiser.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), value

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


def _shuffled_batches(key, n: int, batches: Batches) -> jax.Array:
    """[n_epochs * (n // batch_size), batch_size] point indices: one permutation per epoch."""
    per_epoch = n // batches.batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size ({batches.batch_size}) must be <= the number of training points ({n})")
    orders = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, batches.n))
    return orders[:, : per_epoch * batches.batch_size].reshape(-1, batches.batch_size)
