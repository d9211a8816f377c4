"""The memory a run's recorded history needs, computed from shapes before anything compiles.

A run keeps its records (parameters, metrics, fit flags: [n_chains, n_generations + 1, ...]) and
its snapshots on the host until it writes them; a config that cannot fit is refused up front with
the size, as the accumulate pool is (chain.py).
"""
from __future__ import annotations

import jax
import numpy as np

from jaxcollapse.engine.program import host_memory_budget


def history_bytes(program) -> int:
    """Bytes of every generation's records of every chain, plus the snapshots (from jax.eval_shape)."""
    state, records = jax.eval_shape(program.start, jax.random.key(0))
    per_generation = sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(records))
    snapshots = state.carry.snapshots  # [n_chains, len(snapshot_at) + 1, ...]: the last slot is scratch
    snapshot_bytes = 0 if snapshots is None else \
        int(np.prod(snapshots.shape)) // snapshots.shape[1] * (snapshots.shape[1] - 1) * snapshots.dtype.itemsize
    return per_generation * (program.n_generations + 1) + snapshot_bytes


def check_history(program, limit: int | None = None) -> int:
    """The history's size in bytes; ValueError naming the run settings when it is over `limit`."""
    needed = history_bytes(program)
    limit = host_memory_budget() if limit is None else limit
    if needed > limit:
        raise ValueError(
            f"the recorded history needs {_size(needed)} for n_chains={program.n_chains}, n_generations="
            f"{program.n_generations} (every metric and parameter of every generation of every chain), over the "
            f"{_size(limit)} allowed (half the host's memory); record fewer metrics (run.metrics), or use fewer "
            f"chains or generations")
    return needed


def _size(n: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} bytes"
