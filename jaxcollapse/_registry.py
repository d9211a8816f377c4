"""Registries of named things (stages, scores, rewards, ...): filled by a decorator, read by the TOML check.

A study's TOML names what a registry holds; its allowed names are the registry's keys, so a plugin that
registers a name on import makes it valid in TOML. A name is refused when something else already holds
it, unless that is the same definition run again (a plugin module executed anew after an edit).
"""
from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable


def same_definition(old: Any, new: Any) -> bool:
    """Whether `new` is `old`, or the same definition executed again: the same qualified name in the same module,
    or in the same file (a plugin file imported under another module name, by importlib or a test)."""
    if old is new:
        return True
    qualname = getattr(old, "__qualname__", None)
    if qualname is None or qualname != getattr(new, "__qualname__", None):
        return False
    module, other = getattr(old, "__module__", None), getattr(new, "__module__", None)
    if module is not None and module == other:
        return True
    file = _file_of(module)
    return file is not None and file == _file_of(other)


def _file_of(module_name: str | None) -> Path | None:
    file = getattr(sys.modules.get(module_name or ""), "__file__", None)
    return Path(file).resolve() if file else None


def where(obj: Any) -> str:
    """'module.qualname' of a definition, for messages."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


class Registry(Mapping):
    """name -> object, in registration order; `register(name)` is the decorator that adds one."""

    def __init__(self, what: str, reserved: tuple[str, ...] = (), definition: Callable = lambda obj: obj):
        self.what = what
        self.reserved = reserved
        self._definition = definition     # what an entry was defined by (compared on a second registration)
        self._items: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable:
        """`@registry.register("name")` over a definition, or `registry.register("name", obj)`; returns obj."""
        if not isinstance(name, str) or not name.strip() or name in self.reserved:
            reserved = f" (reserved: {', '.join(map(repr, self.reserved))})" if self.reserved else ""
            raise ValueError(f"a {self.what} needs a non-empty name{reserved}, got {name!r}")

        def add(obj):
            old = self._items.get(name)
            if old is not None and not same_definition(self._definition(old), self._definition(obj)):
                raise ValueError(f"a {self.what} named {name!r} is already registered "
                                 f"({where(self._definition(old))}); choose another name for {where(self._definition(obj))}")
            self._items[name] = obj
            return obj

        return add if obj is None else add(obj)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._items)})"
