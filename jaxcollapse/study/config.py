"""Study configs: the TOML schema, its validation and its resolution into one or more runs.

A config is data: it is parsed with tomllib and nothing in it is evaluated. Every error is a
ConfigError naming the key, its value and what is allowed, raised before anything compiles.

    name = "dice"                      # optional; default: the file's stem
    description = "one line for `jaxcollapse list`"
    plugins = ["poisson.py"]           # optional: Python files imported first (relative to this file's
                                       # folder); what they register (a family, stage, score, ...) may be
                                       # named below. A plugin is code you chose to run (study/plugins.py)

    [family]                           # name + the family's own settings
    name = "categorical"               # categorical | gaussian | gmm | vae (those importable)
    n_states = 6

    [source]                           # the family's make_params(...) arguments (defaults: uniform
    probs = [...]                      # die; N(0, std^2 I)), or data = "file.npy" / dataset = "digits"

    [regime]
    kind = "replace"                   # replace | accumulate | accumulate_subsample | keep_real | fresh_real
    fraction = 0.1                     # keep_real / fresh_real only; or a quality stage (filter_top, verify,
                                       # curate, correct, adaptive_real), or kind = "pipeline" with
                                       # stages = [{ kind = "filter_top", score = "source", keep = 0.5 }, ...]
                                       # a list of numbers (keep = [1.0, 0.5]) is a grid axis: the chains
                                       # are split evenly over every combination, all in one vmapped run

    [run]
    n_chains = 2000
    n_generations = 1000
    n_samples = 100
    seed = 0
    chunk_size = 50                    # generations per compiled chunk (a checkpoint after each)
    metrics = ["entropy"]              # what to record (default: every metric and parameter)
    snapshot_at = [0, 10, 100]         # generations whose training points are stored
    save_params = true                 # write parameter histories to params.npz
    derived_metrics = ["tail_mass"]    # metrics registered with study.register_metric, computed after the run
    x64 = true                         # float64 for this study (default: JAX's, float32)
    em_backend = "xla"                 # execution choices (settings.py; default: the environment's, else
    schedule = "scan"                  # "auto"): em_backend auto | native | xla, schedule auto | scan |
    sums = "reduce"                    # lanes, sums auto | product | reduce; recorded in the manifest

    [collapse]                         # a chain collapses at the first generation where
    metric = "support_size"            # metric < below (or metric > above)
    below = 2                          # or rule = "name", a rule registered with study.register_collapse_rule

    [sweep]                            # optional: every combination of these lists is one run
    "run.n_samples" = [10, 100]
    regime = [{ kind = "replace" }, { kind = "keep_real", fraction = 0.1 }]
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import numbers
import tomllib
import typing
from pathlib import Path
from typing import Any

from jaxcollapse import settings
from jaxcollapse.families import REGISTRY
from jaxcollapse.stages.registry import RANGES, STAGES, toml_keys
from jaxcollapse.study import named, plugins

DATASETS = ("digits",)
SECTIONS = ("family", "source", "regime", "run", "collapse", "sweep")
TOP_LEVEL = ("name", "description", "plugins")


class ConfigError(ValueError):
    """A study config is invalid; the message names the key, its value and what is allowed."""


# ---------------------------------------------------------------- small checks
def _show(value) -> str:
    return json.dumps(value) if isinstance(value, (str, list, dict, bool)) else repr(value)


def _type_name(value) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a float",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _error(key: str, value, allowed: str, problem: str = "") -> ConfigError:
    problem = f" ({problem})" if problem else ""
    return ConfigError(f"{key} = {_show(value)}{problem}; allowed: {allowed}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int(key, value, minimum, maximum=None) -> int:
    allowed = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    if not _is_int(value):
        raise _error(key, value, allowed, f"wrong type: {_type_name(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        raise _error(key, value, allowed, "out of range")
    return int(value)


def _number(key, value, low, high, low_open=False) -> float:
    allowed = f"a number in {'(' if low_open else '['}{low}, {high}]"
    if not _is_number(value):
        raise _error(key, value, allowed, f"wrong type: {_type_name(value)}")
    if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
        raise _error(key, value, allowed, "out of range")
    return float(value)


def _string(key, value, choices=None) -> str:
    allowed = "one of " + ", ".join(_show(c) for c in choices) if choices else "a string"
    if not isinstance(value, str):
        raise _error(key, value, allowed, f"wrong type: {_type_name(value)}")
    if choices and value not in choices:
        raise _error(key, value, allowed, "unknown value")
    return value


def _table(key, value) -> dict:
    if not isinstance(value, dict):
        raise _error(key, value, "a table ([section] or { key = value })", f"wrong type: {_type_name(value)}")
    return value


def _unknown(section: str, table: dict, allowed) -> None:
    for name, value in table.items():
        if name not in allowed:
            close = difflib.get_close_matches(name, list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"[{section}]" if section else "the top level"
            key = f"{section}.{name}" if section else name
            raise _error(key, value, f"the keys of {where}: {', '.join(allowed)}", f"unknown key{hint}")


# ---------------------------------------------------------------- families
def available_families() -> dict:
    """name -> family class: the registry (jaxcollapse.REGISTRY)."""
    return dict(REGISTRY)


_KINDS = {int: "int", float: "number", str: "str", bool: "bool"}
_ALLOWED = {"int": "an integer", "number": "a number", "str": "a string", "bool": "true or false"}
_PLURAL = {"int": "integers", "number": "numbers", "str": "strings", "bool": "booleans"}


def _field_kind(cls, field: dataclasses.Field) -> str:
    """The TOML kind of a family field, from its type annotation: int, number, str, bool, or list_<kind>."""
    hint = typing.get_type_hints(cls).get(field.name, typing.Any)
    if typing.get_origin(hint) is tuple:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(args) == 1 and args[0] in _KINDS:
            return "list_" + _KINDS[args[0]]
    return _KINDS.get(hint, "any")


def family_fields(cls) -> dict:
    """The settings a family accepts in [family]: name -> (kind, required), typed from its annotations."""
    return {f.name: (_field_kind(cls, f), f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls)}


def _check_value(key: str, value, kind: str):
    if kind.startswith("list_"):
        item = kind[len("list_"):]
        if _matches(value, item):
            value = [value]
        if not isinstance(value, list) or not all(_matches(v, item) for v in value):
            raise _error(key, value, f"a list of {_PLURAL[item]}",
                         f"wrong type: {_type_name(value)}")
        return value
    if kind in _ALLOWED and not _matches(value, kind):
        raise _error(key, value, _ALLOWED[kind], f"wrong type: {_type_name(value)}")
    return value


def _matches(value, kind: str) -> bool:
    return {"int": _is_int, "number": _is_number, "str": lambda v: isinstance(v, str),
            "bool": lambda v: isinstance(v, bool)}[kind](value)


def _check_family(table: dict) -> dict:
    table = _table("family", table)
    families = available_families()
    if "name" not in table:
        raise ConfigError(f"family.name is missing; allowed: one of {', '.join(map(_show, families))}")
    name = _string("family.name", table["name"], tuple(families))
    fields = family_fields(families[name])
    _unknown("family", table, ("name",) + tuple(fields))
    out = {"name": name}
    for field, (kind, required) in fields.items():
        key = f"family.{field}"
        if field not in table:
            if required:
                raise ConfigError(f"{key} is missing; the {name} family needs it")
            continue
        out[field] = _check_value(key, table[field], kind)
    return out


def make_family(family_table: dict):
    """The family object of a checked [family] table; its own range errors are named family.<key>."""
    cls = available_families().get(family_table["name"])
    if cls is None:  # a results folder read in a process that has not imported the run's plugins
        raise _error("family.name", family_table["name"], "a registered family: " + ", ".join(available_families()),
                     "not registered in this process; a plugin's family is registered by importing its file: "
                     "--plugin FILE on the command line, jaxcollapse.study.plugins.import_file(FILE) in Python")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in family_table.items() if k != "name"}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(_prefixed("family", str(err), kwargs)) from None


def _prefixed(section: str, message: str, table: dict) -> str:
    """Name the key in an error message raised by the library ('n_states must be ...')."""
    first = message.split(" ", 1)[0]
    if first in table:
        return f"{section}.{message}"
    return f"[{section}] {message}"


# ---------------------------------------------------------------- sections
def _check_source(table: dict, base_dir: Path | None) -> dict:
    table = dict(_table("source", table))
    if "data" in table and "dataset" in table:
        raise _error("source.data", table["data"], "either source.data or source.dataset, not both")
    if "data" in table:
        _unknown("source", table, ("data", "key"))
        path = Path(_string("source.data", table["data"]))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if path.suffix not in (".npy", ".npz"):
            raise _error("source.data", table["data"], "a path to a .npy or .npz file", "unknown file type")
        if not path.exists():
            raise _error("source.data", table["data"], "a path to an existing .npy or .npz file", "no such file")
        table["data"] = str(path.resolve())
        if "key" in table:
            _string("source.key", table["key"])
        return table
    if "dataset" in table:
        _unknown("source", table, ("dataset", "split_seed"))
        _string("source.dataset", table["dataset"], DATASETS)
        if "split_seed" in table:
            _int("source.split_seed", table["split_seed"], 0)
        return table
    for key, value in table.items():  # the family's make_params arguments: numbers or nested lists
        if not _numeric_tree(value):
            raise _error(f"source.{key}", value, "a number or a (nested) list of numbers",
                         f"wrong type: {_type_name(value)}")
    if "std" in table:
        _number("source.std", table["std"], 0.0, math.inf, low_open=True)
    return table


def _numeric_tree(value) -> bool:
    if isinstance(value, list):
        return all(_numeric_tree(v) for v in value)
    return _is_number(value)


def _check_stage(where: str, table: dict, kinds) -> dict:
    """A stage table: its kind (a registered stage) and its keys, whose kinds and ranges the stage's fields
    declare (stages/registry.py)."""
    table = _table(where, table)
    kind = _string(f"{where}.kind", table.get("kind", "replace"), kinds)
    keys = toml_keys(kind)
    for name, value in table.items():
        if name != "kind" and name not in keys:
            allowed = f"the keys of regime kind {_show(kind)}: " + (", ".join(keys) or "none but kind")
            raise _error(f"{where}.{name}", value, allowed, "unknown key")
    out = {"kind": kind}
    for name, spec in keys.items():
        key = f"{where}.{name}"
        if name not in table:
            if spec.required:
                raise ConfigError(f"{key} is missing; regime kind {kind!r} needs it")
            continue
        out[name] = _stage_value(key, table[name], spec)
    return out


def _stage_value(key: str, value, spec):
    names = spec.allowed_names()
    if spec.what is None:
        return _string(key, value, names)
    if spec.what == "count":
        return _int(key, value, 1)
    if spec.what == "numbers":
        if isinstance(value, str) and value in names:
            return value
        if not isinstance(value, list) or not value or not all(_is_number(v) and math.isfinite(v) for v in value):
            allowed = "a list of finite numbers (one per state)" + (
                ", or one of " + ", ".join(map(_show, names)) if names else "")
            raise _error(key, value, allowed, "wrong type")
        return [float(v) for v in value]
    low, high, low_open = RANGES[spec.what]
    if isinstance(value, list):
        if not value:
            raise _error(key, value, "a number, or a non-empty list of numbers (a grid axis)", "empty list")
        return [_number(key, v, low, high, low_open) for v in value]
    return _number(key, value, low, high, low_open)


def _check_regime(table: dict) -> dict:
    table = _table("regime", table)
    if table.get("kind") != "pipeline":
        return _check_stage("regime", table, STAGES.names())
    _unknown("regime", table, ("kind", "stages"))
    stages = table.get("stages")
    if not isinstance(stages, list) or not stages:
        raise _error("regime.stages", stages, "a non-empty list of stage tables, e.g. "
                     '[{ kind = "filter_top", score = "source", keep = 0.5 }, { kind = "keep_real", fraction = 0.1 }]',
                     "missing" if stages is None else f"wrong type: {_type_name(stages)}")
    return {"kind": "pipeline",
            "stages": [_check_stage(f"regime.stages[{i}]", s, STAGES.names()) for i, s in enumerate(stages)]}


RUN_DEFAULTS = {"n_chains": 1000, "n_generations": 100, "n_samples": 100, "seed": 0}


def _check_run(table: dict) -> dict:
    table = _table("run", table)
    _unknown("run", table, ("n_chains", "n_generations", "n_samples", "seed", "chunk_size",
                            "metrics", "snapshot_at", "save_params", "derived_metrics", "x64", *settings.CHOICES))
    out = {**RUN_DEFAULTS, **table}
    out["n_chains"] = _int("run.n_chains", out["n_chains"], 1)
    out["n_generations"] = _int("run.n_generations", out["n_generations"], 1)
    out["n_samples"] = _int("run.n_samples", out["n_samples"], 1)
    out["seed"] = _int("run.seed", out["seed"], 0, 2**32 - 1)
    if "chunk_size" in out:
        out["chunk_size"] = _int("run.chunk_size", out["chunk_size"], 1)
    if "metrics" in out:
        metrics = out["metrics"]
        if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
            raise _error("run.metrics", metrics, "a non-empty list of metric or parameter names",
                         f"wrong type: {_type_name(metrics)}")
    snapshot_at = out.get("snapshot_at", [])
    if not isinstance(snapshot_at, list) or not all(_is_int(g) for g in snapshot_at):
        raise _error("run.snapshot_at", snapshot_at, "a list of generations (integers)",
                     f"wrong type: {_type_name(snapshot_at)}")
    for g in snapshot_at:
        if not 0 <= g <= out["n_generations"]:
            raise _error("run.snapshot_at", snapshot_at, f"generations in [0, {out['n_generations']}]",
                         "out of range")
    out["snapshot_at"] = sorted(set(snapshot_at))
    save = out.get("save_params", True)
    if not isinstance(save, bool):
        raise _error("run.save_params", save, "true or false", f"wrong type: {_type_name(save)}")
    out["save_params"] = save
    if "derived_metrics" in out:
        derived = out["derived_metrics"]
        allowed = "a list of metric names registered with study.register_metric" + (
            ": " + ", ".join(map(_show, named.METRICS)) if named.METRICS else " (none is)")
        if not isinstance(derived, list) or not all(isinstance(m, str) for m in derived):
            raise _error("run.derived_metrics", derived, allowed, f"wrong type: {_type_name(derived)}")
        for name in derived:
            if name not in named.METRICS:
                raise _error("run.derived_metrics", name, allowed, "unknown metric")
    if "x64" in out and not isinstance(out["x64"], bool):
        raise _error("run.x64", out["x64"], "true or false", f"wrong type: {_type_name(out['x64'])}")
    for name, allowed in EXECUTION_VALUES.items():  # kept only where given: a default run's config is as before
        if name in out:
            _string(f"run.{name}", out[name], allowed)
    return out


# the values a study may give the execution settings (settings.py's, the em_backend aliases included)
EXECUTION_VALUES = {"em_backend": settings.EM_BACKENDS + tuple(settings.EM_ALIASES), "schedule": settings.SCHEDULES,
                    "sums": settings.SUMS}
# [run] keys that choose how, not what, is computed: out of the config digest, compared on resume by the
# execution record (settings.different_path) instead
EXECUTION_KEYS = ("x64", *settings.CHOICES)


def _check_collapse(table: dict) -> dict:
    table = _table("collapse", table)
    _unknown("collapse", table, ("metric", "below", "above", "rule"))
    if not table:
        return {}
    if "rule" in table:
        if len(table) > 1:
            raise ConfigError("[collapse] needs either rule = <name> alone or metric = <name> with below / above")
        rules = named.COLLAPSE_RULES.names()
        allowed = "one of " + ", ".join(map(_show, rules)) if rules else "a rule registered with study.register_collapse_rule"
        if not isinstance(table["rule"], str) or table["rule"] not in rules:
            raise _error("collapse.rule", table["rule"], allowed, "unknown rule")
        return {"rule": table["rule"]}
    if "metric" not in table:
        raise ConfigError("collapse.metric is missing; name the metric whose threshold defines collapse")
    _string("collapse.metric", table["metric"])
    if ("below" in table) == ("above" in table):
        raise ConfigError("[collapse] needs exactly one of below = <number> or above = <number>")
    side = "below" if "below" in table else "above"
    _number(f"collapse.{side}", table[side], -math.inf, math.inf)
    return {"metric": table["metric"], side: table[side]}


def _plain_name(name: str) -> str:
    """The study's name is the default results folder, results/<name>: one plain folder name."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\0") or not name.isprintable():
        raise _error("name", name, "a plain folder name (no '/', '\\', '..' or control characters)", "not a plain name")
    return name


def _check_plugins(entries, base_dir: Path | None) -> dict:
    """Import the study's plugin files: {path as given: sha256 of the file run} (it enters the config digest)."""
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise _error("plugins", entries, "a list of paths to .py files, relative to the study's folder",
                     f"wrong type: {_type_name(entries)}")
    try:
        return plugins.load_files(entries, base_dir)
    except ValueError as err:
        raise ConfigError(str(err)) from None


# ---------------------------------------------------------------- whole configs
def check(raw: dict, base_dir: Path | None = None) -> dict:
    """One run's config (no [sweep]), checked and with defaults filled in. Its plugins (and the installed
    ones) are imported first: what they register may be named in the sections."""
    _unknown("", raw, TOP_LEVEL + SECTIONS)
    plugins.load_installed()
    out = {}
    for key in ("name", "description"):
        if key in raw:
            out[key] = _string(key, raw[key])
    if "name" in out:
        _plain_name(out["name"])
    if "plugins" in raw:
        out["plugins"] = _check_plugins(raw["plugins"], base_dir)
    out["family"] = _check_family(raw.get("family", {}))
    out["source"] = _check_source(raw.get("source", {}), base_dir)
    out["regime"] = _check_regime(raw.get("regime", {}))
    out["run"] = _check_run(raw.get("run", {}))
    out["collapse"] = _check_collapse(raw.get("collapse", {}))
    return out


def _flatten_sweep(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten_sweep(value, path + "."))
        else:
            out[path] = value
    return out


def _set_path(config: dict, path: str, value) -> None:
    parts = path.split(".")
    node = config
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: {part} is {_show(child)}, not a table")
        node = child
    node[parts[-1]] = value


def expand(raw: dict, base_dir: Path | None = None) -> list[tuple[str, dict]]:
    """(run name, checked config) for every run of a study: one, or each combination of [sweep]."""
    raw = copy.deepcopy(raw)
    sweep = _flatten_sweep(_table("sweep", raw.pop("sweep", {})))
    for path, values in sweep.items():
        section = path.split(".", 1)[0]
        if section not in SECTIONS or section == "sweep":
            raise _error(f"sweep.{path}", values, f"a key of one of the sections {', '.join(SECTIONS[:-1])}",
                         "unknown key")
        if not isinstance(values, list) or not values:
            raise _error(f"sweep.{path}", values, "a non-empty list of values, one per run",
                         f"wrong type: {_type_name(values)}")
    if not sweep:
        return [("", check(raw, base_dir))]
    runs = []
    for combo in itertools.product(*sweep.values()):
        config = copy.deepcopy(raw)
        for path, value in zip(sweep, combo):
            if "." in path:
                _set_path(config, path, copy.deepcopy(value))
            else:
                config[path] = copy.deepcopy(value)
        name = run_name(dict(zip(sweep, combo)))
        try:
            runs.append((name, check(config, base_dir)))
        except ConfigError as err:
            raise ConfigError(f"in sweep run {name!r}: {err}") from None
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"[sweep] gives runs with the same name: {names}")
    if len({repr(config["run"].get("x64")) for _, config in runs}) > 1:
        raise ConfigError("sweep.run.x64: allowed: one value for the whole study (a study runs in one precision)")
    return runs


def run_name(settings: dict) -> str:
    """A directory-safe name of one sweep combination, e.g. dim-10_n_samples-100_keep_real-0.1."""
    parts = []
    for path, value in settings.items():
        if isinstance(value, dict):
            label = "-".join(str(v) for v in value.values())
        elif isinstance(value, list):
            label = "-".join(str(v) for v in value)
        else:
            label = f"{path.rsplit('.', 1)[-1]}-{value}"
        parts.append(label)
    name = "_".join(parts)
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def sweep_settings(raw: dict) -> dict:
    return _flatten_sweep(raw.get("sweep", {}))


# ---------------------------------------------------------------- files and overrides
def read(path) -> dict:
    """Parse a TOML file (data only; nothing is evaluated)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"study file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """'section.key=value' -> (path, value); value is read as a TOML value, else kept as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. run.n_chains=100")
    path, value_text = (s.strip() for s in text.split("=", 1))
    if not path or any(not part for part in path.split(".")):
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. run.n_chains=100")
    try:
        value = tomllib.loads(f"value = {value_text}")["value"]
    except tomllib.TOMLDecodeError:
        value = value_text  # a bare word: regime.kind=accumulate
    return path, value


def apply_overrides(raw: dict, overrides) -> dict:
    raw = copy.deepcopy(raw)
    swept = _flatten_sweep(raw.get("sweep", {}))
    for text in overrides:
        path, value = parse_override(text)
        if path in swept or any(path.startswith(p + ".") for p in swept):
            raise ConfigError(f"--set {path}: that key is swept in [sweep]; set sweep.{path}=[...] instead")
        section = path.split(".", 1)[0]
        if "." not in path and path not in TOP_LEVEL:
            raise ConfigError(f"--set {text!r}: {path!r} is not a key; use section.key=value with a section "
                              f"of {', '.join(SECTIONS)}")
        if section not in TOP_LEVEL + SECTIONS:
            raise _error(path, value, f"a key of one of the sections {', '.join(SECTIONS)}", "unknown section")
        _set_path(raw, path, value) if "." in path else raw.__setitem__(path, value)
    return raw


def study_x64(runs) -> bool | None:
    """The study's [run] x64 (None: not given, JAX's own setting stays), from expand()'s runs."""
    return runs[0][1]["run"].get("x64") if runs else None


def digest(config: dict) -> str:
    """A stable fingerprint of a checked config (resume refuses a different one)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def load_study(path, overrides=()) -> tuple[dict, list[tuple[str, dict]]]:
    """(raw config with overrides, [(run name, checked config), ...]); raw gets a default name."""
    path = Path(path)
    raw = apply_overrides(read(path), overrides)
    raw.setdefault("name", path.stem)
    return raw, expand(raw, base_dir=path.parent)


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ between two checked configs, as 'key: a != b'."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {_show(va)} != {_show(vb)}")
    return out


def builtin_dir() -> Path:
    """experiments/ next to the package (a source checkout or an editable install), or $JAXCOLLAPSE_EXPERIMENTS."""
    if settings.environment().experiments is not None:
        return settings.environment().experiments
    return Path(__file__).resolve().parents[2] / "experiments"


def find_study(name_or_path: str) -> Path:
    """A path to a TOML file, or the name of a built-in study in experiments/."""
    path = Path(name_or_path)
    if path.exists():
        return path
    for candidate in (builtin_dir() / name_or_path, builtin_dir() / f"{name_or_path}.toml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(p.stem for p in sorted(builtin_dir().glob("*.toml")))
    raise ConfigError(f"study {name_or_path!r} is neither a file nor a built-in study; built-in: {known}")
