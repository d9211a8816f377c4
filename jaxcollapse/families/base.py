"""What every model family provides: the Family protocol, the registry, and shared helpers.

A family is a frozen dataclass registered as a JAX pytree (@family): fields that fix shapes
(dim, n_components, network sizes, ...) are static, numbers that don't (reg_covar, learning
rate, sampling bias) are pytree leaves, so changing them does not recompile. Methods are pure
and take the key first; the engine calls them for one chain (no chain axis) and vmaps.

Adding a family: its file (or folder) with a @register("name") class, one import line in
families/__init__.py, and one row in tests/test_family_contract.py.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from jaxcollapse import settings
from jaxcollapse._precision import full_float32
from jaxcollapse._registry import same_definition
from jaxcollapse.types import FitInfo, Source

REGISTRY: dict[str, type] = {}


@runtime_checkable
class Family(Protocol):
    """The engine's contract. Points are arrays [n, *point_shape] or pytrees of them (point_struct)."""

    has_stats: bool        # True: stats / merge_stats / fit_stats exist (O(1)-memory accumulate)
    heldout_size: int      # held-out real points a parametric source gets per chain (0: none)

    def check_params(self, params) -> Any: ...           # validated params of a source, or raise

    def check_data(self, name: str, data) -> Any: ...    # validated real points, or raise

    def check_settings(self, n_samples: int) -> None: ...

    def fit(self, key, x, w, init) -> tuple[Any, FitInfo]: ...   # w [n] >= 0; init: previous params or None

    def sample(self, key, params, n: int) -> Any: ...    # exact draws

    def generate(self, key, params, n: int, source: Source) -> Any: ...  # what a trained model emits

    def log_prob(self, params, x) -> jax.Array: ...

    def metrics(self, key, params, source: Source) -> dict: ...


@runtime_checkable
class SufficientStats(Protocol):
    def stats(self, x, w) -> Any: ...

    def merge_stats(self, a, b) -> Any: ...

    def fit_stats(self, stats) -> tuple[Any, FitInfo]: ...


class FamilyBase:
    """Defaults every built-in family shares (a family need not inherit it: the protocol is what counts)."""

    has_stats = False
    heldout_size = 0

    def check_source(self, source) -> Source:
        """A checked Source from true params, a real data array, or a jc.Source (ValueError naming it)."""
        return make_source(self, source)

    def chain_source(self, key, source: Source, n_samples: int) -> Source:
        """The source as one chain sees it, drawn once per chain from `key` (the engine carries what changed).

        Default: heldout_size held-out real points when the source is a distribution. A fixed-design
        regression draws its design here, so every generation of a chain labels the same covariates.
        """
        return heldout_per_chain(self, key, source)

    def generate(self, key, params, n: int, source: Source | None = None):
        """What a trained model hands the next generation; by default exact samples."""
        return self.sample(key, params, n)


def heldout_per_chain(fam, key, source: Source) -> Source:
    """Held-out real points drawn per chain when the source is a distribution and the family asks for them."""
    if source.heldout is not None or source.params is None or not getattr(fam, "heldout_size", 0):
        return source
    return source._replace(heldout=fam.sample(key, source.params, fam.heldout_size))


def register(name: str):
    """Class decorator: add a family class to REGISTRY under its TOML name."""

    def wrap(cls):
        # the same definition run again (a plugin file edited and imported anew) takes the name over
        if name in REGISTRY and not same_definition(REGISTRY[name], cls):
            raise ValueError(f"a family named {name!r} is already registered ({REGISTRY[name].__name__})")
        cls.registry_name = name
        REGISTRY[name] = cls
        return cls

    return wrap


def family(static: tuple[str, ...]):
    """Decorator: frozen dataclass registered as a pytree; `static` names the shape-fixing fields."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        data = [n for n in names if n not in static]
        return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=list(static))

    return wrap


_ONE_OFF = contextvars.ContextVar("jaxcollapse_one_off", default=False)


@contextlib.contextmanager
def tracing_one_off():
    """Trace a program that runs once (a study's generation 0) under this: a family may then build a
    smaller program over a faster one (the GMM's batched EM: one block loop instead of three, ~1.6 s
    less compile on 2 CPU cores for ~20 ms more run time at 256 chains)."""
    token = _ONE_OFF.set(True)
    try:
        yield
    finally:
        _ONE_OFF.reset(token)


def one_off() -> bool:
    """Whether the program being traced runs once (tracing_one_off)."""
    return _ONE_OFF.get()


def compiled_when_eager(method):
    """Decorator for a family's fit: called on concrete values (a user's own call, outside any trace), it
    runs as one compiled program, cached by the family's shape fields and the arguments' shapes.

    Eagerly, JAX traces and compiles every lax.while_loop and scan anew at each call: a GMM fit on 1,000
    points took ~1 s per call, ~1 ms once compiled. Under a trace (simulate, jax.jit, jax.vmap) the method
    runs as written, so a study's program is unchanged."""
    # the family is a pytree: its numbers are traced, its shape fields static; the execution settings read
    # at trace time (settings.current()) are static too, so a setting changed between calls compiles anew
    compiled = jax.jit(lambda modes, self, *args, **kwargs: method(self, *args, **kwargs), static_argnums=0)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((self, args, kwargs))):
            return method(self, *args, **kwargs)
        with full_float32():
            return compiled(settings.current(), self, *args, **kwargs)

    wrapper.compiled = compiled
    return wrapper


def point_struct(fam) -> Any:
    """One point's shape and dtype (a pytree of ShapeDtypeStruct for pytree points)."""
    struct = getattr(fam, "point_struct", None)
    if struct is not None:
        return struct
    return jax.ShapeDtypeStruct(tuple(fam.point_shape), fam.point_dtype)


def zero_points(fam, n: int):
    return jax.tree_util.tree_map(lambda s: jnp.zeros((n,) + s.shape, s.dtype), point_struct(fam))


def make_source(fam, source) -> Source:
    """A checked Source from what a user passed: true params, a real data array, or a Source."""
    if source is None:
        raise ValueError("source is required: the true distribution's params, a real data array, or a jc.Source")
    if isinstance(source, Source):
        if source.params is None and source.data is None:
            raise ValueError("source must hold params (the true distribution) or data (a real data pool)")
        params = None if source.params is None else fam.check_params(source.params)
        data = None if source.data is None else _device(fam.check_data("source.data", source.data))
        heldout = None if source.heldout is None else _device(fam.check_data("source.heldout", source.heldout))
        return Source(params, data, heldout)
    if _looks_like_params(source):
        return Source(params=fam.check_params(source))
    return Source(data=_device(fam.check_data("source", source)))


def _device(points):
    return jax.tree_util.tree_map(jnp.asarray, points)


def _looks_like_params(source) -> bool:
    return isinstance(source, tuple) and hasattr(source, "_fields")


def closed_form_info(params: Any) -> FitInfo:
    return FitInfo(
        n_iter=jnp.asarray(1, jnp.int32),
        converged=jnp.asarray(True),
        log_lik=jnp.asarray(jnp.nan, jnp.result_type(float)),
        finite=all_finite(params),
    )


def all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def wrong_params(fam, params, expected: type) -> ValueError:
    """The error for a source of another family (named, with what was expected)."""
    return ValueError(f"source must be {expected.__name__} (or a real data array) for {type(fam).__name__}, "
                      f"got {type(params).__name__}")

