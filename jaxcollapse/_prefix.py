"""Running sums for XLA:CPU, whose cumsum is slow: blocks summed as products with a triangle of ones
(benchmarks/RESULTS.md, "k-means++ without cumsum")."""
from __future__ import annotations

import jax
import jax.numpy as jnp

BLOCK = 32


def prefix_sums(x):
    """Inclusive running sums along the last axis.

    Exact for integers (log-step doubling). Floats: running sums within blocks of BLOCK entries as a
    product with a triangle of ones, plus the running sums of the blocks' totals (the same, recursively).
    Each sum is grouped differently from its neighbours', so the rounding need not be monotone: a
    zero increment can raise the running sum by an ulp (first_exceeding draws robustly)."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return doubling_sums(x)
    width = x.shape[-1]
    if width <= BLOCK:
        return _within(x)
    n_blocks = -(-width // BLOCK)
    pad = [(0, 0)] * (x.ndim - 1) + [(0, n_blocks * BLOCK - width)]
    within = _within(jnp.pad(x, pad).reshape(x.shape[:-1] + (n_blocks, BLOCK)))
    ends = prefix_sums(within[..., -1])
    before = jnp.pad(ends[..., :-1], [(0, 0)] * (ends.ndim - 1) + [(1, 0)])
    return (within + before[..., None]).reshape(x.shape[:-1] + (n_blocks * BLOCK,))[..., :width]


def _within(x):
    """Running sums along a short last axis: x @ upper triangle of ones, at full float32 on every platform."""
    width = x.shape[-1]
    return jnp.matmul(x, jnp.triu(jnp.ones((width, width), x.dtype)), precision=jax.lax.Precision.HIGHEST)


def doubling_sums(x):
    """Inclusive running sums along the last axis by log-step doubling (log2(width) passes: for short rows)."""
    shift, width = 1, x.shape[-1]
    while shift < width:
        pad = [(0, 0)] * (x.ndim - 1) + [(shift, 0)]
        x = x + jnp.pad(x[..., :-shift], pad)
        shift *= 2
    return x


def first_exceeding(cumulative, increments, target):
    """Per row (last axis): the first index with a positive increment whose running sum exceeds target
    [...], else (a target that rounded up to the total) the last positive increment's index.

    An inverse-CDF draw robust to running sums whose rounding is not monotone (prefix_sums): a zero
    increment is never picked, where counting the sums <= target could land on one."""
    m = increments.shape[-1]
    index = jnp.arange(m, dtype=jnp.int32)
    positive = increments > 0
    first = jnp.min(jnp.where(positive & (cumulative > target[..., None]), index, m), -1)
    last = jnp.max(jnp.where(positive, index, 0), -1)
    return jnp.where(first < m, first, last)
