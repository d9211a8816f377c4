"""Sums over the points: one matrix-vector product on a CPU, fused reductions elsewhere."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp

# "auto": a product where JAX's default backend is the CPU, reductions elsewhere (a run placed on the host
# CPU of a GPU machine sums with reductions: the same sums to rounding, slower); "product" / "reduce":
# everywhere (benchmarks, tests). Read when a program is traced. Environment: JAXCOLLAPSE_SUMS.
SUMS = os.environ.get("JAXCOLLAPSE_SUMS", "auto")
MODES = ("auto", "product", "reduce")


def check_mode() -> None:
    if SUMS not in MODES:
        raise ValueError(f"jaxcollapse.families.em.reductions.SUMS (or JAXCOLLAPSE_SUMS) must be one of {MODES}, "
                         f"got {SUMS!r}")


def by_product() -> bool:
    check_mode()
    return SUMS == "product" or (SUMS == "auto" and jax.default_backend() == "cpu")


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
