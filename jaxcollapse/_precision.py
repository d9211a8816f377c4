"""Products in full float32 on every platform."""
from __future__ import annotations

import jax


def full_float32():
    """Context to call a compiled program in: its float32 products run in full float32, so accelerator runs
    do not drift from CPU ones (recent NVIDIA GPUs default to TF32: benchmarks/RESULTS.md, "Float32 products
    on GPUs"). It is part of the compile key: a program traced under it is reused only under it."""
    return jax.default_matmul_precision("float32")
