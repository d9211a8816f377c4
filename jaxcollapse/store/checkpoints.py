"""A run's checkpoint: the chain carry after the last chunk and the records of every chunk so far.

    checkpoint/
      state.json                        generation, config digest, execution record (which code ran:
                                        settings.py), wall time, and the files below
      carry-<leaf>-g<generation>.npy    one file per carry leaf, rewritten only when the leaf changed
      records-<first>-<last>.npz        the records of generations first..last: one file per chunk

A chunk costs its own records plus the carry leaves that changed (a snapshot buffer or a regime's
real data rarely do): O(chunk), not O(history). state.json is written last and names the files of
one consistent state; files it does not name (a kill between two writes) are removed on resume.
Typed PRNG keys are stored as key data with the name of their implementation.
"""
from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np

from jaxcollapse import settings
from jaxcollapse.store import _files

FOLDER = "checkpoint"
STATE = "state.json"
_CARRY = re.compile(r"^carry-(\d+)-g(\d+)\.npy$")
_RECORDS = re.compile(r"^records-(\d+)-(\d+)\.npz$")


def owns(name: str) -> bool:
    """A file name of the tool's own in a checkpoint folder."""
    return name == STATE or bool(_CARRY.match(name) or _RECORDS.match(name))


def exists(path) -> bool:
    return (Path(path) / STATE).is_file()


def _is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype and bytes (-0.0 differs from 0.0, a NaN equals the same NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.dtype.itemsize in (1, 2, 4, 8):
        kind = f"u{a.dtype.itemsize}"
        return bool(np.array_equal(a.view(kind), b.view(kind)))
    return a.tobytes() == b.tobytes()


class Checkpoint:
    """Writes a run's state after each chunk into its checkpoint folder (which must exist)."""

    def __init__(self, path, digest: str, execution: dict | None = None):
        self.path, self.digest = Path(path), digest
        self.execution = execution   # what this run resolved (settings.Resolved.record()); None: not recorded
        self.earlier: list = []      # the records of earlier paths it was resumed over ("unknown": none kept)
        self._carry: dict[int, tuple[str, np.ndarray]] = {}   # leaf -> (file, host copy of what it holds)
        self._impls: dict[int, str] = {}
        self._records: list[str] = []

    @classmethod
    def fresh(cls, path, digest: str, execution: dict | None = None) -> "Checkpoint":
        """A new checkpoint in `path`: the tool's files of an earlier start are removed."""
        checkpoint = cls(path, digest, execution)
        for entry in checkpoint.path.iterdir():
            if owns(entry.name):
                entry.unlink()
        return checkpoint

    def save(self, *, generation: int, first: int, carry, records, wall_seconds: float) -> None:
        """Records of generations first..generation, and the carry after `generation`."""
        name = f"records-{first:09d}-{generation:09d}.npz"
        _files.write_npz(self.path / name, {f"records_{i}": np.asarray(leaf)
                                        for i, leaf in enumerate(jax.tree_util.tree_leaves(records))})
        if name not in self._records:
            self._records.append(name)
        stale = []
        for i, leaf in enumerate(jax.tree_util.tree_leaves(carry)):
            if _is_key(leaf):
                self._impls[i] = str(jax.random.key_impl(leaf))
                leaf = jax.random.key_data(leaf)
            host = np.asarray(leaf)
            held = self._carry.get(i)
            if held is not None and _same_bits(held[1], host):
                continue
            file = f"carry-{i}-g{generation:09d}.npy"
            _files.write_npy(self.path / file, host)
            if held is not None and held[0] != file:
                stale.append(held[0])
            self._carry[i] = (file, host.copy())
        _files.write_json(self.path / STATE, {
            "generation": int(generation), "digest": self.digest, "wall_seconds": float(wall_seconds),
            "carry": [{"file": self._carry[i][0], **({"impl": self._impls[i]} if i in self._impls else {})}
                      for i in sorted(self._carry)],
            "records": self._records,
            **({"execution": self.execution} if self.execution is not None else {}),
            **({"earlier_execution": self.earlier} if self.earlier else {})})
        for file in stale:  # only once state.json names their successors
            (self.path / file).unlink(missing_ok=True)

    @classmethod
    def resume(cls, path, *, digest: str, carry_like, records_like, tidy: bool = True,
               execution: dict | None = None, allow_other_path: bool = False):
        """(checkpoint, generation, carry, record chunks, wall_seconds), rebuilt on the given pytree shapes.

        carry_like / records_like: pytrees of ShapeDtypeStructs (jax.eval_shape of the program's start);
        the records' generation axis (axis 1) is whatever each chunk holds. tidy: remove the files
        state.json does not name (the one writing process only). execution: this run's record; a
        checkpoint written on another path (settings.different_path) is refused in one line unless
        allow_other_path, and one of jaxcollapse 0.1.0 (no record) resumes as "unknown" (checkpoint.earlier).
        """
        path = Path(path)
        state = _files.read_json(path / STATE)
        if state.get("digest") != digest:
            raise ValueError(f"the checkpoint in {path} was written for a different config; rerun with --force")
        checkpoint = cls(path, digest, execution)
        checkpoint.earlier = list(state.get("earlier_execution", []))
        if execution is not None:
            saved = state.get("execution")
            other = settings.different_path(saved, execution)
            if other and saved.get("x64") != execution.get("x64"):
                raise ValueError(f"cannot resume {path.parent}: its checkpoint was {other}; a run cannot change "
                                 "precision midway (rerun with --force, or with its x64)")
            if other and not allow_other_path:
                raise ValueError(f"cannot resume {path.parent}: its checkpoint was {other}; pass --allow-other-path "
                                 "to resume anyway (float32 numbers then differ from an unbroken run on either path)")
            if saved is None or other:
                checkpoint.earlier.append("unknown" if saved is None else saved)
        carry_leaves, carry_def = jax.tree_util.tree_flatten(carry_like)
        if len(state["carry"]) != len(carry_leaves):
            raise ValueError(f"the checkpoint in {path} does not match this program: {len(state['carry'])} carry "
                             f"leaves, expected {len(carry_leaves)}")
        leaves = []
        for i, (like, entry) in enumerate(zip(carry_leaves, state["carry"])):
            data = np.load(path / entry["file"], allow_pickle=False)
            checkpoint._carry[i] = (entry["file"], data)
            if _is_key(like):
                checkpoint._impls[i] = entry["impl"]
                leaf = jax.random.wrap_key_data(data, impl=entry["impl"])
            else:
                leaf = jax.numpy.asarray(data)
            if leaf.shape != like.shape or leaf.dtype != like.dtype:
                raise ValueError(f"the checkpoint in {path} does not match this program: carry leaf {i} is "
                                 f"{leaf.dtype}{list(leaf.shape)}, expected {like.dtype}{list(like.shape)}")
            leaves.append(leaf)
        record_leaves, record_def = jax.tree_util.tree_flatten(records_like)
        chunks, expected_first = [], 0
        for name in state["records"]:
            first, last = (int(g) for g in _RECORDS.match(name).groups())
            if first != expected_first:
                raise ValueError(f"the checkpoint in {path} is missing the records of generation {expected_first}")
            saved = _files.read_npz(path / name)
            leaves_i = []
            for j, like in enumerate(record_leaves):
                data = saved[f"records_{j}"]
                if data.dtype != like.dtype or data.shape[:1] + data.shape[2:] != like.shape[:1] + like.shape[2:] \
                        or data.shape[1] != last - first + 1:
                    raise ValueError(f"the checkpoint in {path} does not match this program: record {j} of {name}")
                leaves_i.append(data)
            chunks.append(jax.tree_util.tree_unflatten(record_def, leaves_i))
            expected_first = last + 1
        generation = int(state["generation"])
        if expected_first != generation + 1:
            raise ValueError(f"the checkpoint in {path} holds records up to generation {expected_first - 1}, "
                             f"not {generation}")
        checkpoint._records = list(state["records"])
        if tidy:
            named = {STATE, *state["records"], *(entry["file"] for entry in state["carry"])}
            for entry in path.iterdir():
                if owns(entry.name) and entry.name not in named:
                    entry.unlink()
        return (checkpoint, generation, jax.tree_util.tree_unflatten(carry_def, leaves), chunks,
                float(state["wall_seconds"]))
