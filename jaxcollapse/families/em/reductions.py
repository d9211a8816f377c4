"""Sums over the points written for XLA:CPU."""
from __future__ import annotations

import jax.numpy as jnp


def row_sums(rows):
    """[len(rows)] sums over the points of equally shaped [n] arrays, as one matrix-vector product.

    XLA:CPU runs every reduction as its own pass over the points (split into partial sums for
    accuracy); one product over the stacked rows costs a third to a half of that for the EM and
    Lloyd steps' 6-12 sums (benchmarks/gmm_profile.py).
    """
    stacked = jnp.stack(rows)
    return stacked @ jnp.ones(stacked.shape[-1:], stacked.dtype)
