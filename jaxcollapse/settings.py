"""Every environment variable jaxcollapse reads, read here once and validated; the execution choices.

Execution choices say which code computes a result: the GMM's EM backend (native C++ or XLA), the
lane schedule of iterative fits, and how sums over the points are formed. They are static: a choice
is resolved when a program is traced and is part of that program's cache key. Defaults come from the
environment (JAXCOLLAPSE_NATIVE, JAXCOLLAPSE_SCHEDULE, JAXCOLLAPSE_SUMS); `configure(...)` changes them
for the process, `using(...)` for a block, a study's `[run]` keys for its runs. What a run resolved,
and why, is logged once on `logging.getLogger("jaxcollapse")` and written into its manifest and
checkpoint (`Resolved.record()`). This module imports nothing of jaxcollapse: it is the bottom of
the import graph.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import jaxlib

LOGGER = logging.getLogger("jaxcollapse")
LOGGER.addHandler(logging.NullHandler())  # quiet unless the application shows it (the CLI does)

EM_BACKENDS = ("auto", "native", "xla")
EM_ALIASES = {"on": "native", "off": "xla"}          # JAXCOLLAPSE_NATIVE's values before the setting had its name
SCHEDULES = ("auto", "scan", "lanes", "lanes-accelerator")   # lanes-accelerator: the accelerator's layout anywhere
SUMS = ("auto", "product", "reduce")
CHOICES = ("em_backend", "schedule", "sums")
_SWITCH_WORDS = {"": False, "0": False, "false": False, "no": False, "off": False,
                 "1": True, "true": True, "yes": True, "on": True}

# the variable that gives each execution setting its default
VARIABLES = {"em_backend": "JAXCOLLAPSE_NATIVE", "schedule": "JAXCOLLAPSE_SCHEDULE", "sums": "JAXCOLLAPSE_SUMS"}


def _one_of(name: str, value: Any, allowed: tuple, aliases: Mapping[str, str] | None = None) -> str:
    aliases = aliases or {}
    if isinstance(value, str) and value.strip().lower() in (*allowed, *aliases):
        value = value.strip().lower()
        return aliases.get(value, value)
    words = ", ".join(repr(a) for a in allowed)
    if aliases:
        words += " (or " + ", ".join(f"{a!r} for {b!r}" for a, b in aliases.items()) + ")"
    raise ValueError(f"{name} must be one of {words}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ExecutionSettings:
    """The requested execution choices (hashable: they are part of compiled programs' cache keys).

    em_backend: "auto" (native C++ on a CPU where it builds and the shape fits, XLA elsewhere),
    "native" (fail where it does not build), "xla"; "on" / "off" are accepted for native / xla.
    schedule: "auto" (lane by lane on an accelerator, scanned on a CPU), "scan", "lanes",
    "lanes-accelerator". sums: "auto" (a matrix-vector product on a CPU, reductions elsewhere),
    "product", "reduce".
    """

    em_backend: str = "auto"
    schedule: str = "auto"
    sums: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "em_backend", _one_of("em_backend", self.em_backend, EM_BACKENDS, EM_ALIASES))
        object.__setattr__(self, "schedule", _one_of("schedule", self.schedule, SCHEDULES))
        object.__setattr__(self, "sums", _one_of("sums", self.sums, SUMS))


@dataclasses.dataclass(frozen=True)
class Environment:
    """What the environment says, validated (`environment()`; `read_environment(mapping)` for any mapping)."""

    execution: ExecutionSettings
    native_dir: Path                 # the native EM's build folder
    cache_dir: Path                  # JAX's persistent compilation cache for the command line
    no_cache: bool                   # JAXCOLLAPSE_NO_CACHE
    jax_cache_dir: str | None        # JAX_COMPILATION_CACHE_DIR: the user's own, left alone
    experiments: Path | None         # JAXCOLLAPSE_EXPERIMENTS: where the built-in studies are looked for
    cxx: str | None                  # CXX: the compiler for the native EM
    num_processes: int | None        # JAX_NUM_PROCESSES / JAX_PROCESS_ID (multi-process runs)
    process_id: int | None
    set_by_variable: frozenset = frozenset()   # execution fields whose default a variable set


def _int_variable(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def read_environment(environ: Mapping[str, str] | None = None) -> Environment:
    """The environment's defaults, validated: a bad value is a ValueError naming the variable and its values."""
    environ = os.environ if environ is None else environ
    choices, named = {}, set()
    for field, variable in VARIABLES.items():
        if environ.get(variable, "") == "":
            continue
        allowed = {"em_backend": (EM_BACKENDS, EM_ALIASES), "schedule": (SCHEDULES, None), "sums": (SUMS, None)}[field]
        choices[field] = _one_of(variable, environ[variable], *allowed)
        named.add(field)
    no_cache_text = environ.get("JAXCOLLAPSE_NO_CACHE", "")
    if no_cache_text.strip().lower() not in _SWITCH_WORDS:
        raise ValueError(f"JAXCOLLAPSE_NO_CACHE must be one of {', '.join(repr(w) for w in _SWITCH_WORDS if w)} "
                         f"(or empty), got {no_cache_text!r}")
    cache_base = Path(environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))

    def folder(variable: str, default: Path) -> Path:
        return Path(environ[variable]).expanduser() if environ.get(variable) else default

    experiments = environ.get("JAXCOLLAPSE_EXPERIMENTS")
    return Environment(
        execution=ExecutionSettings(**choices),
        native_dir=folder("JAXCOLLAPSE_NATIVE_DIR", cache_base / "jaxcollapse" / "native"),
        cache_dir=folder("JAXCOLLAPSE_CACHE_DIR", cache_base / "jaxcollapse" / "jax"),
        no_cache=_SWITCH_WORDS[no_cache_text.strip().lower()],
        jax_cache_dir=environ.get("JAX_COMPILATION_CACHE_DIR") or None,
        experiments=Path(experiments).expanduser() if experiments else None,
        cxx=environ.get("CXX") or None,
        num_processes=_int_variable(environ, "JAX_NUM_PROCESSES"),
        process_id=_int_variable(environ, "JAX_PROCESS_ID"),
        set_by_variable=frozenset(named))


_ENVIRONMENT: Environment | None = None


def environment() -> Environment:
    """The process's environment, read on first use (so `import jaxcollapse` never fails on a bad value)."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        _ENVIRONMENT = read_environment()
    return _ENVIRONMENT


def reload_environment() -> Environment:
    """Read the environment again (after a test or a launcher changed it)."""
    global _ENVIRONMENT
    _ENVIRONMENT = None
    return environment()


# ---- the current execution settings ----------------------------------------------------------------
_CONFIGURED: ExecutionSettings | None = None
_USING: contextvars.ContextVar[ExecutionSettings | None] = contextvars.ContextVar("jaxcollapse_settings", default=None)


def current() -> ExecutionSettings:
    """The execution settings in force: a `using` block's, else `configure`'s, else the environment's."""
    return _USING.get() or _CONFIGURED or environment().execution


def configure(settings: ExecutionSettings | None = None, **changes) -> ExecutionSettings:
    """Set the process's execution settings (validated), e.g. `configure(em_backend="xla")`; returns them.
    `configure(ExecutionSettings())` goes back to the defaults, `configure(None)` to the environment's."""
    global _CONFIGURED
    if settings is None and not changes:
        _CONFIGURED = None
        return current()
    _CONFIGURED = dataclasses.replace(settings or current(), **changes)
    return _CONFIGURED


@contextlib.contextmanager
def using(settings: ExecutionSettings | None = None, **changes):
    """`with using(em_backend="xla"): ...`: these settings inside the block (programs built there keep them)."""
    chosen = dataclasses.replace(settings or current(), **changes)
    token = _USING.set(chosen)
    try:
        yield chosen
    finally:
        _USING.reset(token)


def from_run_section(run: Mapping[str, Any]) -> ExecutionSettings:
    """A study's [run] em_backend / schedule / sums over the current settings (the others are left)."""
    return dataclasses.replace(current(), **{k: run[k] for k in CHOICES if k in run})


def source(field: str) -> str:
    """Where the current value of an execution setting came from, for `jaxcollapse info`."""
    if _USING.get() is not None or _CONFIGURED is not None:
        return "set from Python or a study"
    if field in environment().set_by_variable:
        return VARIABLES[field]
    return f"default; {VARIABLES[field]} sets it"


# ---- resolution ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Choice:
    """A resolved execution choice and why it was made."""

    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.value} ({self.reason})"


def resolve_sums(requested: str | None = None, backend: str | None = None) -> Choice:
    requested = _one_of("sums", requested or current().sums, SUMS)
    if requested != "auto":
        return Choice(requested, "requested")
    backend = backend or jax.default_backend()
    if backend == "cpu":
        return Choice("product", "auto: one matrix-vector product on a CPU")
    return Choice("reduce", f"auto: fused reductions on {backend}")


def resolve_schedule(pipelined: bool, requested: str | None = None, backend: str | None = None) -> Choice:
    """pipelined: whether the family's fit runs in pieces (only such fits can go lane by lane)."""
    requested = _one_of("schedule", requested or current().schedule, SCHEDULES)
    backend = backend or jax.default_backend()
    if not pipelined:
        return Choice("scan", "the family's fit is not in pieces")
    if requested == "scan":
        return Choice("scan", "requested")
    if requested == "auto" and backend == "cpu":
        return Choice("scan", "auto: scanned on a CPU")
    if requested == "lanes-accelerator" or backend != "cpu":
        return Choice("lanes-accelerator", "requested" if requested != "auto" else f"auto: lane by lane on {backend}")
    return Choice("lanes", "requested")


@dataclasses.dataclass(frozen=True, eq=False)
class Resolved:
    """What a run resolved: the execution choices (None: the family has no such choice), the precision,
    the versions, and the hashes of the plugin files it ran ({path: sha256})."""

    settings: ExecutionSettings
    em_backend: Choice | None
    schedule: Choice
    sums: Choice | None
    x64: bool
    jax: str = jax.__version__
    jaxlib: str = jaxlib.__version__
    plugins: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def record(self) -> dict:
        """The JSON record for the manifest and the checkpoint."""
        choices = {name: getattr(self, name) for name in CHOICES}
        return {**{name: None if c is None else c.value for name, c in choices.items()},
                "x64": self.x64, "jax": self.jax, "jaxlib": self.jaxlib, "plugins": dict(self.plugins),
                "reasons": {name: c.reason for name, c in choices.items() if c is not None},
                "requested": dataclasses.asdict(self.settings)}

    def line(self) -> str:
        parts = [f"{name}={getattr(self, name)}" for name in CHOICES if getattr(self, name) is not None]
        return ", ".join(parts + [f"x64={str(self.x64).lower()}", f"jax {self.jax}"])


COMPARED = (*CHOICES, "x64", "jax", "jaxlib", "plugins")


def _describe(record: Mapping, keys) -> str:
    words = []
    for key in keys:
        value = record.get(key)
        if key in ("jax", "jaxlib"):
            words.append(f"{key} {value}")
        elif isinstance(value, bool):
            words.append(f"{key}={str(value).lower()}")
        elif key == "plugins":
            words.append(f"plugins {dict(value or {})}")
        else:
            words.append(f"{key}={value}")
    return ", ".join(words)


def different_path(saved: Mapping | None, now: Mapping) -> str | None:
    """None where a checkpoint's record (saved) and this run's (now) name the same path; else one line naming
    both ("written by ...; this run resolves ..."). A checkpoint of jaxcollapse 0.1.0 has no record (None):
    its path is unknown, not refused."""
    if saved is None:
        return None
    keys = [key for key in COMPARED if saved.get(key) != now.get(key)]
    if not keys:
        return None
    shown = keys + [key for key in ("x64", "jax") if key not in keys]
    return f"written by {_describe(saved, shown)}; this run resolves {_describe(now, shown)}"


# ---- logging ---------------------------------------------------------------------------------------
_ANNOUNCED: set[str] = set()


def announce(line: str) -> None:
    """Log `line` at INFO, once per process (quiet unless the application shows jaxcollapse's log, as the CLI does)."""
    if line not in _ANNOUNCED:
        _ANNOUNCED.add(line)
        LOGGER.info(line)

