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
        return Result(params=take(self.params), metrics=take(self.metrics), info=take(self.info),
                      snapshots=take(self.snapshots), snapshot_at=self.snapshot_at, keys=self.keys[i:i + 1],
                      wall_seconds=self.wall_seconds)

    @property
    def failed(self) -> np.ndarray:
        """[n_chains] True where some fit produced non-finite parameters."""
        return ~np.all(np.asarray(self.info.finite), axis=-1)

    @property
    def n_generations(self) -> int:
        return int(np.shape(next(iter(self.metrics.values())))[1]) - 1 if self.metrics else 0

    def tidy(self) -> dict:
        """Columns of a tidy table: chain, generation and one column per metric.

        Metrics with further axes (e.g. per-component values) get one column per entry, named
        metric[i] (metric[i,j] ...).
        """
        n_chains, n_gens = self.n_chains, self.n_generations + 1
        columns = {"chain": np.repeat(np.arange(n_chains), n_gens),
                   "generation": np.tile(np.arange(n_gens), n_chains)}
        for name, values in self.metrics.items():
            values = np.asarray(values)
            if values.ndim == 2:
                columns[name] = values.reshape(-1)
                continue
            flat = values.reshape(n_chains * n_gens, -1)
            for j, index in enumerate(np.ndindex(*values.shape[2:])):
                columns[f"{name}[{','.join(map(str, index))}]"] = flat[:, j]
        return columns

    def to_dataframe(self):
        """A pandas DataFrame with columns chain, generation and one per metric (pandas is optional)."""
        return pandas().DataFrame(self.tidy())


def pandas():
    try:
        import pandas  # optional dependency: jaxcollapse does not install pandas
    except ImportError:
        raise ImportError("to_dataframe() needs pandas, which jaxcollapse does not install: "
                          "pip install pandas (or use .tidy() for plain numpy columns)") from None
    return pandas
