"""The tidy table of a results directory as a file: csv (always) or parquet (with pyarrow)."""
from __future__ import annotations

import csv
import io as text_io
from pathlib import Path

import numpy as np

from jaxcollapse.store import _files
from jaxcollapse.store.folder import ResultsFolder

FORMATS = ("csv", "parquet")


def write(results_dir, columns: dict, path=None, format: str = "csv") -> Path:
    """Write `columns` (name -> 1-D array, equal lengths) to `path` (default results_dir/tidy.<format>).

    Inside a results folder jaxcollapse made, the file is recorded as the tool's; elsewhere an existing
    file is never replaced.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    writer = _parquet_writer() if format == "parquet" else _write_csv
    results_dir = Path(results_dir)
    path = results_dir / f"tidy.{format}" if path is None else Path(path)
    folder = ResultsFolder.existing(results_dir)
    if folder is not None and _inside(path, results_dir):
        return folder.write_with(path.resolve().relative_to(results_dir.resolve()).as_posix(),
                                 lambda target: writer(target, columns))
    if path.exists():
        raise FileExistsError(f"refusing to overwrite {path}: choose another file")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    writer(path, columns)
    return path


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _write_csv(path: Path, columns: dict) -> None:
    names = list(columns)
    values = [np.asarray(columns[name]) for name in names]

    def write(f):
        text = text_io.TextIOWrapper(f, encoding="utf-8", newline="")
        out = csv.writer(text)
        out.writerow(names)
        n = len(values[0]) if values else 0
        block = 65536
        for start in range(0, n, block):
            rows = zip(*(_cells(v[start:start + block]) for v in values))
            out.writerows(rows)
        text.flush()
        text.detach()

    _files.atomic_write(path, write)


def _cells(values: np.ndarray) -> np.ndarray:
    """Text that reads back as the same value: numpy's shortest round-trip form of each float (float32 too)."""
    return values.astype(str)


def _parquet_writer():
    try:
        import pyarrow  # optional dependency: jaxcollapse does not install pyarrow
        import pyarrow.parquet as parquet
    except ImportError:
        raise ImportError("parquet export needs pyarrow, which jaxcollapse does not install: pip install pyarrow "
                          "(or use --format csv)") from None

    def write(path: Path, columns: dict) -> None:
        table = pyarrow.table({name: np.asarray(values) for name, values in columns.items()})
        _files.atomic_write(path, lambda f: parquet.write_table(table, f))

    return write
