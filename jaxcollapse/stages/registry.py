"""The stage registry: each TOML kind (replace, keep_real, filter_top, ...) and its TOML keys, derived.

A stage is registered under its TOML kind by `@register_stage("kind")` over its factory (the keys are
the factory's argument names, as in `filter_top(score, keep, *, min_keep=None)`) or over the stage class
itself (`@jc.stage(name="kind")`: the keys are the class's fields). Each key's kind and range come from
the stage class's dataclass field of that name, `dataclasses.field(metadata={"toml": ...})`:

    "share"         a number in [0, 1]      } or a non-empty list of them: a grid axis, the chains
    "keep"          a number in (0, 1]      } split evenly over every combination (one vmapped run)
    "nonnegative"   a number in [0, inf)    }
    "number"        any finite number       }
    "count"         an integer >= 1
    "numbers"       a list of finite numbers (one per state)
    a Registry or a tuple of strings: one of its names (read when a study is checked, so a
    plugin's names count)

More metadata: "key" (the TOML key, when the field's name differs from the factory's argument),
"names" (a Registry a "numbers" key also accepts names from), "required" (overrides the default:
an argument without a default is required). A factory argument no field describes is not a TOML key
and must have a default.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from typing import Any, Callable

from jaxcollapse._registry import Registry

RANGES = {"share": (0.0, 1.0, False), "keep": (0.0, 1.0, True), "nonnegative": (0.0, math.inf, False),
          "number": (-math.inf, math.inf, False)}   # (low, high, low end open)
KINDS = (*RANGES, "count", "numbers")


@dataclasses.dataclass(frozen=True)
class TomlKey:
    """One TOML key of a stage: its kind (KINDS, or None for a name only), the names it allows, and
    whether a table must give it."""

    what: str | None
    names: Any            # a Registry, a tuple of strings, or None
    required: bool

    def allowed_names(self) -> tuple[str, ...]:
        return tuple(self.names) if self.names is not None else ()

    @property
    def grid(self) -> bool:
        """Whether a list of values is a grid axis (a number with a range)."""
        return self.what in RANGES


@dataclasses.dataclass(frozen=True)
class StageEntry:
    """A registered stage: its factory (the TOML keys are its arguments), its class, and those keys."""

    factory: Callable
    cls: type
    keys: dict


STAGES = Registry("stage", reserved=("pipeline",), definition=lambda entry: entry.factory)


def register_stage(name: str, cls: type | None = None):
    """Decorator: register a stage factory (or a stage class) under the TOML kind `name`.

    Over a factory, the stage class is `cls` or the factory's return annotation; over a class, the class
    is its own factory. The TOML keys are derived at once, so a field without metadata is found here.
    """

    def add(factory):
        stage_cls = cls if cls is not None else factory if isinstance(factory, type) else _returned(name, factory)
        STAGES.register(name, StageEntry(factory, stage_cls, _derive_keys(name, factory, stage_cls)))
        return factory

    return add


def toml_keys(kind: str) -> dict[str, TomlKey]:
    """The TOML keys of the registered stage `kind`: name -> TomlKey, in the factory's argument order."""
    return STAGES[kind].keys


def _returned(name: str, factory: Callable) -> type:
    try:
        cls = typing.get_type_hints(factory).get("return")
    except NameError as err:
        raise TypeError(f"register_stage({name!r}): cannot read {factory.__qualname__}'s return annotation ({err}); "
                        "pass the stage class: register_stage(name, cls)") from None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"register_stage({name!r}): {factory.__qualname__} must be annotated to return its stage "
                        "class (made with @jc.stage), or pass it: register_stage(name, cls)")
    return cls


def _derive_keys(name: str, factory: Callable, cls: type) -> dict[str, TomlKey]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"register_stage({name!r}): {cls!r} is not a stage class (made with @jc.stage)")
    described = {}
    for field in dataclasses.fields(cls):
        if "toml" not in field.metadata:
            continue
        meta = field.metadata
        spec = meta["toml"]
        if isinstance(spec, str):
            if spec not in KINDS:
                raise TypeError(f"stage {name!r}: field {field.name!r} has toml = {spec!r}; allowed: one of "
                                f"{', '.join(map(repr, KINDS))}, a Registry or a tuple of names")
            what, names = spec, meta.get("names")
        elif isinstance(spec, (Registry, tuple)):
            what, names = None, spec
        else:
            raise TypeError(f"stage {name!r}: field {field.name!r} has toml = {spec!r}; allowed: one of "
                            f"{', '.join(map(repr, KINDS))}, a Registry or a tuple of names")
        described[meta.get("key", field.name)] = (what, names, meta.get("required"))
    keys = {}
    for param in inspect.signature(factory).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name not in described:
            if param.default is param.empty:
                raise TypeError(f"stage {name!r}: argument {param.name!r} has no default and no field describing it "
                                "for TOML (dataclasses.field(metadata={'toml': ...}))")
            continue
        what, names, required = described[param.name]
        keys[param.name] = TomlKey(what, names, param.default is param.empty if required is None else bool(required))
    return keys
