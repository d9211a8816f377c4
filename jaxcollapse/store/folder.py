"""The folders jaxcollapse writes into: a marker listing what it wrote there, and a lock.

A results folder holds `.jaxcollapse.json`, the marker: the study it holds, every file the tool
wrote there (with its size and modification time when written, so a file changed since is not
taken for the tool's) and every folder it made. `--force` deletes exactly those files, and the
folders the tool made once they are empty; anything else in the folder survives. A non-empty
folder without a marker is never used. `.jaxcollapse.lock` (created with O_EXCL, holding the host
and pid) keeps two live runs out of one folder; a lock whose process has died is taken over.
Checkpoint folders (see checkpoints.py) are the tool's scratch space: files in them that match
its own names are its own.
"""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

from jaxcollapse.store import _files, checkpoints

MARKER = ".jaxcollapse.json"
LOCK = ".jaxcollapse.lock"
FORMAT = 1
_STALE_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(_files.TEMP_SUFFIX) + "$")


class FolderError(FileExistsError):
    """A folder the tool must not use (not its own, in use, or holding another study)."""


class ResultsFolder:
    """A folder jaxcollapse made (or was given empty), claimed by this process; paths are relative to it.

    within(name) gives the same folder seen from a subfolder (a sweep's run), sharing one marker.
    """

    def __init__(self, root: Path, marker: dict, prefix: str = "", _shared: dict | None = None):
        self.root, self.prefix = Path(root), prefix
        self._shared = _shared if _shared is not None else {"marker": marker, "written": [], "locked": False}

    # ---------------------------------------------------------------- claiming
    @classmethod
    def claim(cls, path, *, force: bool = False, resume: bool = False, study: dict | None = None) -> "ResultsFolder":
        """Make `path` ready for a run and lock it; refuse (FolderError, one line) whatever is not the tool's.

        study: {"name": ..., "runs": [run names]}: what the folder is for; --resume refuses another study.
        """
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise FolderError(f"{root} exists and is not a folder; choose another --out")
        made = not root.exists()
        if made:
            if resume:
                raise FileNotFoundError(f"cannot resume: {root} does not exist")
            root.mkdir(parents=True)
            entries = set()
        else:
            entries = set(os.listdir(root))
            if MARKER not in entries and entries - {LOCK}:
                raise FolderError(f"refusing to use {root}: it is not empty and jaxcollapse did not make it "
                                  f"(no {MARKER}); choose another --out")
        folder = cls(root, _new_marker(made=made))
        folder._lock()
        try:
            if MARKER in entries:
                folder._shared["marker"] = _read_marker(root)
            else:
                folder._save_marker()
            folder._prepare(force=force, resume=resume, study=study)
        except BaseException:
            folder.release()
            raise
        return folder

    def _prepare(self, *, force: bool, resume: bool, study: dict | None) -> None:
        marker = self._shared["marker"]
        held = marker.get("study")
        if resume:
            if held is not None and study is not None and not _same_study(held, study):
                raise FolderError(f"cannot resume {self.root}: it holds {_describe(held)}, not {_describe(study)}; "
                                  f"choose another --out")
            self.remove_stale_temps()
        elif marker["files"] or marker["scratch"]:
            if not force:
                raise FolderError(f"{self.root} already holds results ({_describe(held)}); pass --resume to "
                                  f"continue it or --force to replace them")
            self._delete_own_files()
        if study is not None:
            marker["study"] = study
            self._save_marker()

    @classmethod
    def existing(cls, path) -> "ResultsFolder | None":
        """A folder written by the tool, not claimed (to add files to it: figures, exports); None without a marker."""
        root = Path(path)
        if not (root / MARKER).is_file():
            return None
        return cls(root, _read_marker(root))

    # ---------------------------------------------------------------- the lock
    def _lock(self) -> None:
        lock = self.root / LOCK
        mine = json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
        for _ in range(3):
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over(lock)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(mine + "\n")
            self._shared["locked"] = True
            return
        raise FolderError(f"{self.root} is locked by another jaxcollapse run ({lock})")

    def _take_over(self, lock: Path) -> None:
        """Remove the lock of a dead process on this host; refuse a live or foreign one."""
        owner = _read_lock(lock)
        if owner is None:
            return  # removed meanwhile: try again
        if owner.get("host") != socket.gethostname():
            raise FolderError(f"{self.root} is in use by a jaxcollapse run on {owner.get('host')} (pid "
                              f"{owner.get('pid')}); if no run is alive there, delete {lock}")
        if _alive(owner.get("pid")):
            raise FolderError(f"{self.root} is in use by another jaxcollapse run (pid {owner.get('pid')}); "
                              f"wait for it to finish or choose another --out")
        # rename is atomic: of several processes taking over the same stale lock, one gets it
        stale = lock.with_name(f"{LOCK}.stale-{os.getpid()}")
        try:
            os.rename(lock, stale)
        except FileNotFoundError:
            return
        taken = _read_lock(stale)
        if taken is not None and taken != owner and _alive(taken.get("pid")):
            os.replace(stale, lock)  # a live run's fresh lock: give it back
            raise FolderError(f"{self.root} is in use by another jaxcollapse run (pid {taken.get('pid')})")
        stale.unlink(missing_ok=True)

    def release(self) -> None:
        if self._shared["locked"]:
            (self.root / LOCK).unlink(missing_ok=True)
            self._shared["locked"] = False

    # ---------------------------------------------------------------- paths
    def within(self, name: str) -> "ResultsFolder":
        return ResultsFolder(self.root, self._shared["marker"], self._rel(name), self._shared)

    def path(self, name: str = "") -> Path:
        rel = self._rel(name)
        return self.root / rel if rel else self.root

    def _rel(self, name: str) -> str:
        return "/".join(p for p in (self.prefix, str(name)) if p)

    @property
    def written(self) -> list[Path]:
        """Every file written through this folder by this process that is still there, in order."""
        return [self.root / rel for rel in self._shared["written"] if (self.root / rel).exists()]

    # ---------------------------------------------------------------- writing
    def make_folder(self, name: str) -> Path:
        rel = self._rel(name)
        path = self.root / rel
        if not path.exists():
            path.mkdir(parents=True)
            self._shared["marker"]["folders"].append(rel)
            self._save_marker()
        elif not path.is_dir():
            raise FolderError(f"refusing to write into {path}: it is not a folder")
        return path

    def make_scratch(self, name: str) -> Path:
        """A folder of the tool's own working files (checkpoints), removed with them."""
        path = self.make_folder(name)
        scratch = self._shared["marker"]["scratch"]
        if self._rel(name) not in scratch:
            scratch.append(self._rel(name))
            self._save_marker()
        return path

    def drop_scratch(self, name: str, owns) -> None:
        """Delete a scratch folder's files for which owns(file name) holds, then the folder if empty."""
        rel = self._rel(name)
        _empty_scratch(self.root / rel, owns)
        self._shared["marker"]["scratch"] = [s for s in self._shared["marker"]["scratch"] if s != rel]
        self._save_marker()

    def write_json(self, name: str, obj) -> Path:
        return self._write(name, lambda path: _files.write_json(path, obj))

    def write_npz(self, name: str, arrays: dict, *, compressed: bool = False) -> Path:
        return self._write(name, lambda path: _files.write_npz(path, arrays, compressed=compressed))

    def copy_in(self, source, name: str) -> Path:
        return self._write(name, lambda path: _files.copy_file(source, path))

    def write_with(self, name: str, write) -> Path:
        """write(path) writes the file (atomically); the folder records it."""
        return self._write(name, write)

    def _write(self, name: str, write) -> Path:
        rel = self._rel(name)
        path = self.root / rel
        self.check_writable(name)
        write(path)
        self._record(rel)
        return path

    def check_writable(self, name: str) -> None:
        """Refuse to replace a file the tool did not write (or one changed since it wrote it)."""
        rel = self._rel(name)
        path = self.root / rel
        if path.exists() and not self._owns(rel):
            raise FolderError(f"refusing to overwrite {path}: jaxcollapse did not write it (or it was changed "
                              f"since); move it away")

    def adopt(self, paths) -> None:
        """Files just written here on the tool's behalf (figures): recorded as its own."""
        marker, root = self._shared["marker"], self.root.resolve()
        for path in paths:
            rel = Path(path).resolve().relative_to(root).as_posix()
            folder = str(Path(rel).parent)
            if folder != "." and folder not in marker["folders"] and not (root / folder / MARKER).exists():
                marker["folders"].append(folder)
            self._record(rel, save=False)
        self._save_marker()

    def remove(self, name: str) -> None:
        rel = self._rel(name)
        if self._owns(rel):
            (self.root / rel).unlink()
            del self._shared["marker"]["files"][rel]
            self._save_marker()

    def _record(self, rel: str, save: bool = True) -> None:
        stat = (self.root / rel).stat()
        self._shared["marker"]["files"][rel] = [stat.st_size, stat.st_mtime_ns]
        if rel not in self._shared["written"]:
            self._shared["written"].append(rel)
        if save:
            self._save_marker()

    def _owns(self, rel: str) -> bool:
        known = self._shared["marker"]["files"].get(rel)
        if known is None:
            return False
        try:
            stat = (self.root / rel).stat()
        except FileNotFoundError:
            return True
        return [stat.st_size, stat.st_mtime_ns] == list(known)

    def _save_marker(self) -> None:
        _files.write_json(self.root / MARKER, self._shared["marker"], durable=False)

    # ---------------------------------------------------------------- cleaning
    def _delete_own_files(self) -> None:
        """--force: every file the tool wrote (unchanged since), its scratch folders, then its empty folders."""
        marker = self._shared["marker"]
        changed = [rel for rel in marker["files"] if not self._owns(rel)]
        if changed:
            raise FolderError(f"refusing to replace the results in {self.root}: {changed[0]} was changed after "
                              f"jaxcollapse wrote it; move it away first")
        self.remove_stale_temps()
        for rel in list(marker["files"]):
            (self.root / rel).unlink(missing_ok=True)
        marker["files"] = {}
        for rel in marker["scratch"]:
            _empty_scratch(self.root / rel, checkpoints.owns)
        marker["scratch"] = []
        for rel in sorted(marker["folders"], key=lambda r: r.count("/"), reverse=True):
            try:
                (self.root / rel).rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                continue  # something else is in it: it stays, and so does the record that the tool made it
            marker["folders"].remove(rel)
        marker["study"] = None
        self._save_marker()

    def remove_stale_temps(self) -> list[Path]:
        """Temp files of the tool's atomic writes left by a killed run (only in this folder and its own folders)."""
        marker = self._shared["marker"]
        removed = []
        for rel in ["", *marker["folders"], *marker["scratch"]]:
            folder = self.root / rel
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if _STALE_TEMP.match(entry.name) and entry.is_file():
                    entry.unlink()
                    removed.append(entry)
        return removed


# ---------------------------------------------------------------- helpers
def _new_marker(made: bool) -> dict:
    return {"jaxcollapse": FORMAT, "made": made, "study": None, "files": {}, "folders": [], "scratch": []}


def _read_marker(root: Path) -> dict:
    try:
        marker = _files.read_json(root / MARKER)
        if not isinstance(marker, dict) or marker.get("jaxcollapse") != FORMAT:
            raise ValueError
        for key, kind in (("files", dict), ("folders", list), ("scratch", list)):
            if not isinstance(marker.get(key), kind):
                raise ValueError
    except (ValueError, OSError):
        raise FolderError(f"refusing to use {root}: its {MARKER} is unreadable; choose another --out") from None
    return marker


def _read_lock(lock: Path) -> dict | None:
    try:
        owner = json.loads(lock.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        owner = {}
    return owner if isinstance(owner, dict) else {}


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # a lock being written, or one we cannot read: do not take it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _same_study(held: dict, study: dict) -> bool:
    return held.get("name") == study.get("name") and list(held.get("runs", [])) == list(study.get("runs", []))


def _describe(study: dict | None) -> str:
    if not study:
        return "no study"
    runs = study.get("runs") or []
    named = [r for r in runs if r]
    return f"study {study.get('name')!r}" + (f" ({len(named)} runs)" if named else "")


def _empty_scratch(folder: Path, owns) -> None:
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.is_file() and (owns(entry.name) or _STALE_TEMP.match(entry.name)):
            entry.unlink()
    try:
        folder.rmdir()
    except OSError:
        pass  # a file of someone else's is in it: it stays
