"""Products in full float32 on every platform."""
from __future__ import annotations

import jax


def full_float32():
    """Context to call a compiled program in: its float32 products (matmul, einsum, flax's layers) run
    in full float32. Their default precision is TF32 on recent NVIDIA GPUs (10 mantissa bits), which
    would keep about three digits of a matrix product's entries (the Gaussian family's and the KDE's
    products, the networks' layers, a covariance's factors), and GPU runs would drift from CPU ones. (On
    an H100, jax 0.11.2, the GMM's matrix-vector sums gave the same numbers at the default precision:
    matrix-vector products did not use TF32; benchmarks/RESULTS.md, GPU.) CPUs compute float32
    products in full float32 either way: the same numbers there. It is part of the compile key, so a
    program traced under it is reused only under it."""
    return jax.default_matmul_precision("float32")
