"""The one result type of a run, for simulate() and load() alike."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxcollapse.types import FitInfo


@dataclasses.dataclass
class Result:
    """Histories with leading axes [n_chains, n_generations + 1] (one chain: [n_generations + 1])."""

    params: Any                 # the family's params NamedTuple of histories, or None if not recorded
    metrics: dict               # name -> array
    info: FitInfo               # per-fit flags: n_iter, converged, log_lik, finite
    snapshots: Any              # [n_chains, len(snapshot_at), n_samples, ...] or None
    snapshot_at: tuple
    keys: Any                   # chain keys [n_chains]
    wall_seconds: float = float("nan")

    @property
    def n_chains(self) -> int:
        return int(self.keys.shape[0])

    def chain_key(self, i: int):
        return self.keys[i]

    def chain(self, i: int) -> "Result":
        """Chain i alone (no chain axis)."""
        take = lambda tree: jax.tree_util.tree_map(lambda a: a[i], tree)  # noqa: E731
        return dataclasses.replace(
            self, params=take(self.params), metrics=take(self.metrics), info=take(self.info),
            snapshots=take(self.snapshots), keys=self.keys[i:i + 1])

    @property
    def failed(self) -> np.ndarray:
        """[n_chains] True where some fit produced non-finite parameters."""
        return ~np.all(np.asarray(self.info.finite), axis=-1)
