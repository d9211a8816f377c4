"""Results directories: save, load, checkpoint, resume.

One run's directory:
    config.json      the resolved config (every default filled in)
    metrics.npz      name -> array [chain, generation, ...]   (plain numpy, allow_pickle=False)
    params.npz       parameter histories [chain, generation, ...] (when recorded and saved)
    fit_info.npz     per-fit flags [chain, generation]: n_iter, converged, log_lik, finite
    snapshots.npz    snapshot_at [k], samples [chain, k, n_samples, ...]   (when asked for)
    manifest.json    versions, devices, seed, wall time, chain-generations per second
    checkpoint.npz   the last chunk's state while a run is unfinished (removed at the end)
    figures/
A sweep's directory holds study.json (its runs and swept keys), figures/ and one run
directory per combination. Everything is written atomically (a temp file, then os.replace).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)
MARKERS = ("manifest.json", "config.json", "study.json", "checkpoint.npz")


# ---------------------------------------------------------------- atomic files
def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    _atomic_write(Path(path), lambda f: f.write((json.dumps(obj, indent=2, default=_jsonable) + "\n").encode()))


def write_npz(path, arrays: dict) -> None:
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def read_json(path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_npz(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


# ---------------------------------------------------------------- directories
def is_results_dir(path) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / m).exists() for m in MARKERS)


def prepare(path, *, force: bool = False, resume: bool = False) -> Path:
    """Make `path` ready for a run: never overwrite results unless force; resume keeps them."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory")
    if path.exists() and any(path.iterdir()):
        if resume:
            if not is_results_dir(path):
                raise FileExistsError(f"cannot resume in {path}: it holds no jaxcollapse results")
            return path
        if not force:
            raise FileExistsError(f"{path} already holds results; pass --resume to continue it or --force to "
                                  f"overwrite it")
        if not is_results_dir(path):
            raise FileExistsError(f"refusing to delete {path}: it is not empty and does not look like a "
                                  f"jaxcollapse results directory (no {' / '.join(MARKERS)})")
        shutil.rmtree(path)
    elif resume and not path.exists():
        raise FileNotFoundError(f"cannot resume: {path} does not exist")
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_complete(path) -> bool:
    manifest = Path(path) / "manifest.json"
    return manifest.exists() and read_json(manifest).get("status") == "complete"


# ---------------------------------------------------------------- save and load one run
def _named(tree) -> dict:
    if tree is None:
        return {}
    if hasattr(tree, "_asdict"):
        tree = tree._asdict()
    return {k: np.asarray(v) for k, v in dict(tree).items() if v is not None}


def save_run(path, result, config: dict, manifest: dict, extra_metrics: dict | None = None) -> None:
    """Write a finished run (a chain.Result) and its manifest; the manifest goes last (it marks completion)."""
    import jax

    path = Path(path)
    metrics = {**_named(result.metrics), **(extra_metrics or {})}
    write_npz(path / "metrics.npz", metrics)
    if result.params is not None and config["run"].get("save_params", True):
        write_npz(path / "params.npz", _named(result.params))
    info = _named(result.info)
    info["chain_key_data"] = np.asarray(jax.random.key_data(result.keys))
    write_npz(path / "fit_info.npz", info)
    if result.snapshots is not None:
        write_npz(path / "snapshots.npz", {"snapshot_at": np.asarray(result.snapshot_at, np.int64),
                                           "samples": np.asarray(result.snapshots)})
    write_json(path / "config.json", config)
    write_json(path / "manifest.json", {**manifest, "status": "complete"})
    checkpoint = path / "checkpoint.npz"
    if checkpoint.exists():
        checkpoint.unlink()


class Results:
    """One run's results directory, as saved by `jaxcollapse run` (see jaxcollapse.load)."""

    def __init__(self, path):
        path = Path(path)
        if not is_complete(path):
            raise FileNotFoundError(f"{path} holds no finished run (manifest.json with status 'complete'); "
                                    f"an interrupted run continues with `jaxcollapse run ... --resume`")
        self.path = path
        self.config = read_json(path / "config.json")
        self.manifest = read_json(path / "manifest.json")
        self.metrics = read_npz(path / "metrics.npz")
        self.params = read_npz(path / "params.npz") if (path / "params.npz").exists() else None
        self.info = read_npz(path / "fit_info.npz")
        self.snapshot_at, self.snapshots = (), None
        if (path / "snapshots.npz").exists():
            snaps = read_npz(path / "snapshots.npz")
            self.snapshot_at, self.snapshots = tuple(int(g) for g in snaps["snapshot_at"]), snaps["samples"]

    @property
    def name(self) -> str:
        return self.manifest.get("run") or self.config.get("name", self.path.name)

    @property
    def n_chains(self) -> int:
        return int(self.config["run"]["n_chains"])

    @property
    def n_generations(self) -> int:
        return int(self.config["run"]["n_generations"])

    def tidy(self) -> dict:
        """Columns of a tidy table: chain, generation and one column per scalar-per-generation metric.

        Metrics with further axes (e.g. per-state probabilities) get one column per entry, named
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
        pd = _pandas()
        return pd.DataFrame(self.tidy())

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
        pd = _pandas()
        frames = []
        for name, results in self.items():
            frame = pd.DataFrame(results.tidy())
            frame.insert(0, "run", name)
            for key, value in self.settings[name].items():
                frame[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}: runs {list(self)})"


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("to_dataframe() needs pandas, which jaxcollapse does not install: "
                          "pip install pandas (or use .tidy() for plain numpy columns)") from None
    return pandas


def load(path) -> Results | Sweep:
    """The results saved in `path` by `jaxcollapse run`: a Results (one run) or a Sweep (name -> Results).

    Examples:
        res = jaxcollapse.load("results/dice")
        res.metrics["support_size"].shape      # [chain, generation]
        res.to_dataframe()                      # needs pandas
    """
    path = Path(path)
    if (path / "study.json").exists():
        return Sweep(path)
    return Results(path)


# ---------------------------------------------------------------- checkpoints
def _key_dtype(leaf) -> bool:
    import jax

    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def write_checkpoint(path, *, generation: int, carry, records, config_digest: str, wall_seconds: float) -> None:
    """The state after a chunk: the chain carry (keys as key data), the records so far, the generation."""
    import jax

    arrays = {"generation": np.asarray(generation, np.int64), "digest": np.asarray(config_digest),
              "wall_seconds": np.asarray(wall_seconds, np.float64)}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(carry)):
        if _key_dtype(leaf):
            arrays[f"carry_{i}"] = np.asarray(jax.random.key_data(leaf))
            arrays[f"carry_{i}_impl"] = np.asarray(str(jax.random.key_impl(leaf)))
        else:
            arrays[f"carry_{i}"] = np.asarray(leaf)
    for i, leaf in enumerate(jax.tree_util.tree_leaves(records)):
        arrays[f"records_{i}"] = np.asarray(leaf)
    write_npz(Path(path) / "checkpoint.npz", arrays)


def read_checkpoint(path, *, carry_like, records_like, config_digest: str):
    """(generation, carry, records, wall_seconds) from a checkpoint, rebuilt on the given pytree shapes.

    carry_like / records_like: pytrees of ShapeDtypeStructs (jax.eval_shape of the program's start);
    the records' generation axis (axis 1) is whatever the checkpoint holds.
    """
    import jax

    saved = read_npz(Path(path) / "checkpoint.npz")
    if str(saved["digest"]) != config_digest:
        raise ValueError(f"the checkpoint in {path} was written for a different config; rerun with --force")
    carry_leaves, carry_def = jax.tree_util.tree_flatten(carry_like)
    leaves = []
    for i, like in enumerate(carry_leaves):
        data = saved[f"carry_{i}"]
        if _key_dtype(like):
            leaf = jax.random.wrap_key_data(data, impl=str(saved[f"carry_{i}_impl"]))
        else:
            leaf = jax.numpy.asarray(data)
        if leaf.shape != like.shape or leaf.dtype != like.dtype:
            raise ValueError(f"the checkpoint in {path} does not match this program: carry leaf {i} is "
                             f"{leaf.dtype}{list(leaf.shape)}, expected {like.dtype}{list(like.shape)}")
        leaves.append(leaf)
    record_leaves, record_def = jax.tree_util.tree_flatten(records_like)
    records = []
    for i, like in enumerate(record_leaves):
        data = saved[f"records_{i}"]
        if data.dtype != like.dtype or data.shape[:1] + data.shape[2:] != like.shape[:1] + like.shape[2:]:
            raise ValueError(f"the checkpoint in {path} does not match this program: record {i}")
        records.append(data)
    return (int(saved["generation"]), jax.tree_util.tree_unflatten(carry_def, leaves),
            jax.tree_util.tree_unflatten(record_def, records), float(saved["wall_seconds"]))
