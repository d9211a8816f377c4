"""Files written atomically (a temp file, then os.replace), and the plain readers: the bottom of the results on disk."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)
TEMP_SUFFIX = ".jaxcollapse-tmp"  # .<name>.<8 random characters>.jaxcollapse-tmp: removed on --resume / --force


def atomic_write(path, write, *, durable: bool = True) -> None:
    """write(file) into a temp file next to `path`, then rename it over `path` (fsync'd first if durable)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj, *, durable: bool = True) -> None:
    text = json.dumps(obj, indent=2, default=_jsonable) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode()), durable=durable)


def write_npz(path, arrays: dict, *, compressed: bool = False) -> None:
    """An .npz (np.load reads it); compressed: deflate at level 1, much faster than np.savez_compressed's
    level 6 for a slightly larger file (benchmarks/RESULTS.md, Checkpoints)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if not compressed:
        atomic_write(Path(path), lambda f: np.savez(f, **arrays))
        return

    def deflate(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as npz:
            for name, array in arrays.items():
                with npz.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)

    atomic_write(Path(path), deflate)


def write_npy(path, array) -> None:
    array = np.asarray(array)
    atomic_write(Path(path), lambda f: np.save(f, array, allow_pickle=False))


def copy_file(source, path) -> None:
    with open(source, "rb") as src:
        atomic_write(Path(path), lambda f: shutil.copyfileobj(src, f))


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


def is_complete(path) -> bool:
    manifest = Path(path) / "manifest.json"
    return manifest.exists() and read_json(manifest).get("status") == "complete"
