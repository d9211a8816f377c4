"""Trace counters for "no recompile" tests, read without JAX's private caches or jaxpr text.

A Python side effect inside a jitted function runs only while JAX traces it: a call that reuses a compiled
program leaves a counter unchanged. The engine's own programs are counted by jaxcollapse.engine.trace_count();
spy() counts any other function a program calls while it is traced.
"""
import functools


class Spy:
    """The calls of a wrapped function, in order (its results kept): inside a jitted program, one per trace."""

    def __init__(self):
        self.results = []

    @property
    def count(self) -> int:
        return len(self.results)


def spy(monkeypatch, owner, name: str) -> Spy:
    """Replace owner.name (a module's function, or a class's method) by a wrapper that records each call."""
    fn, record = getattr(owner, name), Spy()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        out = fn(*args, **kwargs)
        record.results.append(out)
        return out

    monkeypatch.setattr(owner, name, wrapper)
    return record
