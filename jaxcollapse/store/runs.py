"""A run's results directory: save_run writes it, Results / Sweep / load read it.

One run's directory:
    .jaxcollapse.json  the tool's marker: the study, and every file and folder it wrote (folder.py)
    config.json      the resolved config (every default filled in)
    metrics.npz      name -> array [chain, generation, ...]   (compressed numpy, allow_pickle=False)
    params.npz       parameter histories [chain, generation, ...] (when recorded and saved)
    fit_info.npz     per-fit flags [chain, generation]: n_iter, converged, log_lik, finite; each chain's key
    snapshots.npz    snapshot_at [k], samples [chain, k, n_samples, ...]   (when asked for)
    manifest.json    versions, devices, seed, the execution record (which code ran), wall time, chain-gen/s
    checkpoint/      the carry and per-chunk records while a run is unfinished (checkpoints.py; removed at the end)
    figures/
A sweep's directory holds study.json (its runs and swept keys), figures/ and one run
directory per combination. Every file is written atomically (_files.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from jaxcollapse.engine.result import Result, pandas
from jaxcollapse.store import export
from jaxcollapse.store._files import is_complete, read_json, read_npz
from jaxcollapse.types import FitInfo


# ---------------------------------------------------------------- save and load one run
def _named(tree) -> dict:
    if tree is None:
        return {}
    if hasattr(tree, "_asdict"):
        tree = tree._asdict()
    return {k: np.asarray(v) for k, v in dict(tree).items() if v is not None}


def save_run(folder, result, config: dict, manifest: dict, extra_metrics: dict | None = None) -> None:
    """Write a finished run (an engine Result) into a ResultsFolder, compressed; the manifest goes last (it
    marks completion)."""
    metrics = {**_named(result.metrics), **(extra_metrics or {})}
    folder.write_npz("metrics.npz", metrics, compressed=True)
    if result.params is not None and config["run"].get("save_params", True):
        folder.write_npz("params.npz", _named(result.params), compressed=True)
    info = _named(result.info)
    info["chain_key_data"] = np.asarray(jax.random.key_data(result.keys))
    folder.write_npz("fit_info.npz", info, compressed=True)
    if result.snapshots is not None:
        folder.write_npz("snapshots.npz", {"snapshot_at": np.asarray(result.snapshot_at, np.int64),
                                           "samples": np.asarray(result.snapshots)}, compressed=True)
    folder.write_json("config.json", config)
    folder.write_json("manifest.json", {**manifest, "status": "complete"})


class Results(Result):
    """One run's results directory, as saved by `jaxcollapse run` (see jaxcollapse.load): the same
    Result that simulate() returns (chain(i), failed, tidy(), to_dataframe()), plus path, config
    and manifest. Params are a dict of histories (name -> array)."""

    def __init__(self, path):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if not is_complete(path):
            raise FileNotFoundError(f"{path} holds no finished run (manifest.json with status 'complete'); "
                                    f"an interrupted run continues with `jaxcollapse run ... --resume`")
        self.path = path
        self.config = read_json(path / "config.json")
        self.manifest = read_json(path / "manifest.json")
        info = read_npz(path / "fit_info.npz")
        keys = jax.random.wrap_key_data(info.pop("chain_key_data")) if "chain_key_data" in info else None
        snapshot_at, snapshots = (), None
        if (path / "snapshots.npz").exists():
            snaps = read_npz(path / "snapshots.npz")
            snapshot_at, snapshots = tuple(int(g) for g in snaps["snapshot_at"]), snaps["samples"]
        super().__init__(
            params=read_npz(path / "params.npz") if (path / "params.npz").exists() else None,
            metrics=read_npz(path / "metrics.npz"),
            info=FitInfo(**{name: info[name] for name in FitInfo._fields}) if set(FitInfo._fields) <= set(info)
            else info,
            snapshots=snapshots, snapshot_at=snapshot_at, keys=keys,
            wall_seconds=float(self.manifest.get("wall_seconds", float("nan"))))

    @property
    def name(self) -> str:
        return self.manifest.get("run") or self.config.get("name", self.path.name)

    @property
    def n_chains(self) -> int:
        return int(self.config["run"]["n_chains"])

    @property
    def n_generations(self) -> int:
        return int(self.config["run"]["n_generations"])

    def export(self, path=None, format: str = "csv") -> Path:
        """Write the tidy table (see tidy()) as csv or parquet (parquet needs pyarrow); returns the file.

        path: default DIR/tidy.<format>. An existing file is replaced only if jaxcollapse wrote it.
        """
        return export.write(self.path, self.tidy(), path, format)

    def __repr__(self) -> str:
        return (f"Results({str(self.path)!r}: {self.n_chains} chains x {self.n_generations} generations, "
                f"metrics {sorted(self.metrics)})")


class Sweep(dict):
    """A sweep's results directory: run name -> Results, in the study's order."""

    def __init__(self, path):
        path = Path(path)
        self.path = path
        self.study = read_json(path / "study.json")
        super().__init__((run["name"], Results(path / run["name"])) for run in self.study["runs"])

    @property
    def settings(self) -> dict:
        """run name -> {swept key: value}."""
        return {run["name"]: run["settings"] for run in self.study["runs"]}

    def to_dataframe(self):
        """One tidy table of every run, with a `run` column and one column per swept key."""
        pd = pandas()
        frames = []
        for name, results in self.items():
            frame = pd.DataFrame(results.tidy())
            frame.insert(0, "run", name)
            for key, value in self.settings[name].items():
                frame[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def tidy(self) -> dict:
        """One tidy table of every run: a `run` column, one column per swept key, then each run's tidy()."""
        parts = []
        for name, results in self.items():
            table = results.tidy()
            n = len(table["chain"])
            swept = {key: np.full(n, json.dumps(value) if isinstance(value, (dict, list)) else value)
                     for key, value in self.settings[name].items()}
            parts.append({"run": np.full(n, name), **swept, **table})
        columns = list(dict.fromkeys(c for part in parts for c in part))
        missing = [c for c in columns if not all(c in part for part in parts)]
        if missing:
            raise ValueError(f"the runs of {self.path} record different metrics ({missing[0]} is not in every run); "
                             f"export them one by one")
        return {c: np.concatenate([part[c] for part in parts]) for c in columns}

    def export(self, path=None, format: str = "csv") -> Path:
        """Write tidy() as csv or parquet (parquet needs pyarrow); returns the file (default DIR/tidy.<format>)."""
        return export.write(self.path, self.tidy(), path, format)

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}: runs {list(self)})"


def load(path) -> Results | Sweep:
    """The results saved in `path` by `jaxcollapse run`: a Results (one run) or a Sweep (name -> Results).

    Examples:
        res = jaxcollapse.load("results/dice")
        res.metrics["support_size"].shape      # [chain, generation]
        res.to_dataframe()                      # needs pandas
        res.export(format="csv")                # results/dice/tidy.csv
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if (path / "study.json").exists():
        return Sweep(path)
    return Results(path)
