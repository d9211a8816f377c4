"""Sums over the points: one matrix-vector product on a CPU, fused reductions elsewhere."""
from __future__ import annotations

import jax.numpy as jnp

from jaxcollapse import settings


def by_product() -> bool:
    """Whether sums are one matrix-vector product (the sums setting, resolved when a program is traced:
    "auto" is a product where JAX's default backend is the CPU, reductions elsewhere)."""
    return settings.resolve_sums().value == "product"


def row_sums(rows):
    """[len(rows)] sums over the points of equally shaped [n] arrays.

    XLA:CPU runs every reduction as its own pass over the points (split into partial sums for
    accuracy); one product over the stacked rows costs a third to a half of that for the EM and
    Lloyd steps' 6-12 sums (benchmarks/gmm_profile.py). A GPU fuses sibling reductions into the
    kernel that computes their rows, whereas the product writes the stacked rows to memory and reads
    them back (benchmarks/gpu_em_step.py).
    """
    if by_product():
        stacked = jnp.stack(rows)
        return stacked @ jnp.ones(stacked.shape[-1:], stacked.dtype)
    return jnp.stack([jnp.sum(row, axis=-1) for row in rows])
