"""A study's plugins: Python files it names (`plugins = ["poisson.py"]`), imported before its config is checked.

A plugin is code the user chose to run: it is imported with full Python privileges. On import it
registers what the study then names: a family (families.register), its study knowledge
(study.knowledge.register_knowledge), a stage (stages.register_stage or @jc.stage(name=...)), a score,
verifier, reward, correction or feedback metric (stages.register_*), a derived metric or a collapse
rule (study.register_metric, study.register_collapse_rule).

A path is read relative to the study file's folder (an absolute path as it is). The bytes hashed are the
bytes executed; the module's name comes from the path's hash, so two studies' `poisson.py` do not clash,
and a file already imported with the same content is not imported again (an edited one is, under the
same name). Installed packages add plugins through the entry-point group `jaxcollapse.plugins`, loaded
once, on the first study checked in a process.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import sys
import types
from pathlib import Path

MODULE_PREFIX = "jaxcollapse_plugin_"
ENTRY_POINT_GROUP = "jaxcollapse.plugins"

_imported: dict[Path, str] = {}        # resolved path -> sha256 of the bytes executed under its module name
_installed: dict[str, str] | None = None   # entry point name -> "distribution version", once loaded


def resolve(entry: str, base_dir: Path | None) -> Path:
    """The plugin file `entry` names: relative to base_dir (the study's folder), resolved; ValueError if it
    is not an existing .py file (the message reads as the config key's: 'plugins = "x" (...)')."""
    path = Path(entry).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    allowed = "allowed: paths to .py files, relative to the study's folder (or absolute)"
    if path.suffix != ".py":
        raise ValueError(f'plugins = "{entry}" (not a .py file); {allowed}')
    if not path.is_file():
        raise ValueError(f'plugins = "{entry}" (no such file: {path}); {allowed}')
    return path.resolve()


def module_name(path: Path) -> str:
    """The module name a plugin file is imported under: from its resolved path's hash."""
    return MODULE_PREFIX + hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]


def import_file(path: Path) -> str:
    """Import the plugin file (once per content) and return the sha256 of the bytes executed."""
    path = Path(path).resolve()
    source = path.read_bytes()
    sha256 = hashlib.sha256(source).hexdigest()
    if _imported.get(path) == sha256:
        return sha256
    name = module_name(path)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    previous = sys.modules.get(name)
    sys.modules[name] = module          # dataclasses and pickling look their module up while it runs
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except BaseException as err:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        err.add_note(f"jaxcollapse: while importing the plugin {path}")
        raise
    _imported[path] = sha256
    return sha256


def load_files(entries, base_dir: Path | None) -> dict[str, str]:
    """Import a study's plugin files in order: {path as the study gives it: sha256 of the file run}."""
    out = {}
    for entry in entries:
        out[entry] = import_file(resolve(entry, base_dir))
    return out


def load_installed() -> dict[str, str]:
    """Load every entry point of the group `jaxcollapse.plugins` once per process: {name: "distribution version"}."""
    global _installed
    if _installed is None:
        loaded = {}
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry_point.load()
            except BaseException as err:
                err.add_note(f"jaxcollapse: while loading the installed plugin {entry_point.name!r} "
                             f"({entry_point.value}) of the entry-point group {ENTRY_POINT_GROUP!r}")
                raise
            dist = entry_point.dist
            loaded[entry_point.name] = f"{dist.name} {dist.version}" if dist is not None else entry_point.value
        _installed = loaded
    return dict(_installed)
