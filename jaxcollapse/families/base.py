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
    """The engine's contract (required of every family; the optional hooks below are each their own Protocol).

    Points are arrays [n, *point_shape] of point_dtype, or pytrees of them (declare point_struct: FamilyBase
    then derives point_shape / point_dtype as the pytrees of the leaves' shapes and dtypes). Methods are
    pure, take the key first, and see one chain (no chain axis): the engine vmaps them.
    """

    point_shape: Any       # one point's shape: a tuple (a pytree of tuples for pytree points)
    point_dtype: Any       # one point's dtype (a pytree of dtypes for pytree points)

    def check_params(self, params) -> Any: ...           # validated params of a source, or raise

    def check_data(self, name: str, data) -> Any: ...    # validated real points, or raise

    def check_settings(self, n_samples: int) -> None: ...

    def fit(self, key, x, w, init) -> tuple[Any, FitInfo]: ...   # w [n] >= 0; init: previous params or None

    def sample(self, key, params, n: int) -> Any: ...    # exact draws

    def generate(self, key, params, n: int, source: Source) -> Any: ...  # what a trained model emits

    def log_prob(self, params, x) -> jax.Array: ...

    def metrics(self, key, params, source: Source) -> dict: ...   # never NaN for a finite model


# ---- optional hooks: each a small Protocol; the engine tests for them only through the helpers below ----
@runtime_checkable
class SufficientStats(Protocol):
    """O(1)-memory accumulation: accumulating stages keep merge_stats(stats(x, w), ...) and the engine fits fit_stats."""

    def stats(self, x, w) -> Any: ...

    def merge_stats(self, a, b) -> Any: ...

    def fit_stats(self, stats) -> tuple[Any, FitInfo]: ...


@runtime_checkable
class LocalCoordinates(Protocol):
    """Fit in the generating model's own frame: each generation is generated with generate_local, and fitted
    with fit_local whenever the stage hands the generated points on unchanged (exact however far it collapses)."""

    def generate_local(self, key, params, n: int, source: Source) -> tuple[Any, Any]: ...   # (points, local)

    def fit_local(self, key, local, w, init) -> tuple[Any, FitInfo]: ...


@runtime_checkable
class ChainSource(Protocol):
    """The source as one chain sees it (held-out points, a fixed design): called once per chain at generation 0."""

    def chain_source(self, key, source: Source, n_samples: int) -> Source: ...


@runtime_checkable
class RecordParams(Protocol):
    """What a run records of the carried params (a NamedTuple), called at every recorded generation."""

    def record_params(self, params) -> Any: ...


@runtime_checkable
class ResizeParams(Protocol):
    """Params that hold their training set (KDE): generation 0's are grown once, at the start, to later shapes."""

    def resize_params(self, params, like) -> Any: ...


@runtime_checkable
class PointStruct(Protocol):
    """Pytree points ((x, y) pairs): one point's ShapeDtypeStruct pytree, read wherever the engine allocates points."""

    point_struct: Any


@runtime_checkable
class HeldOut(Protocol):
    """Held-out real points a parametric source gets per chain (drawn with sample() by the default chain_source)."""

    heldout_size: int


@runtime_checkable
class FitInPieces(Protocol):
    """The fit in pieces: with no other fit (stats, local), the engine may step generations lane by lane (pipeline.py)."""

    def fit_begin(self, key, x, w, init) -> tuple[Any, Any]: ...   # (state, data), one chain

    def fit_iterate(self, states, datas) -> Any: ...               # one iteration of a batch (leading axis)

    def fit_running(self, state) -> jax.Array: ...

    def fit_end(self, state, data) -> tuple[Any, FitInfo]: ...     # what fit() would have returned


@runtime_checkable
class ExecutionChoices(Protocol):
    """Code paths a family chooses between (the GMM's EM backend and sums): {setting: settings.Choice}, recorded."""

    def execution_choices(self) -> dict: ...


HOOKS: dict[str, type] = {
    "sufficient_stats": SufficientStats,
    "local_coordinates": LocalCoordinates,
    "chain_source": ChainSource,
    "record_params": RecordParams,
    "resize_params": ResizeParams,
    "point_struct": PointStruct,
    "heldout": HeldOut,
    "fit_in_pieces": FitInPieces,
    "execution_choices": ExecutionChoices,
}


def hooks(fam) -> frozenset[str]:
    """The optional hooks (names of HOOKS) a family declares in full (HeldOut only with heldout_size > 0).

    Examples:
      >>> import jaxcollapse as jc
      >>> sorted(hooks(jc.Gaussian(dim=1)))
      ['chain_source', 'local_coordinates', 'record_params', 'sufficient_stats']
    """
    return frozenset(name for name, protocol in HOOKS.items()
                     if isinstance(fam, protocol) and (name != "heldout" or heldout_size(fam) > 0))


def declares(fam, hook: str) -> bool:
    """Whether a family declares one optional hook (a name of HOOKS) in full."""
    return isinstance(fam, HOOKS[hook])


def partial_hooks(fam) -> dict[str, list[str]]:
    """Hooks a family declares only in part ({hook: its missing methods}): the engine ignores those."""
    out = {}
    for name, protocol in HOOKS.items():
        members = _members(protocol)
        present = [m for m in members if hasattr(fam, m)]
        if present and len(present) < len(members):
            out[name] = [m for m in members if m not in present]
    return out


def missing_members(fam) -> list[str]:
    """The Family protocol's members a family lacks ([] for a family)."""
    return [m for m in _members(Family) if not hasattr(fam, m)]


def _members(protocol) -> list[str]:
    names = set()
    for base in protocol.__mro__:
        if base is Protocol or base is object or base.__name__ in ("Protocol", "Generic"):
            continue
        names |= {n for n in vars(base).get("__annotations__", {})}
        names |= {n for n, v in vars(base).items() if callable(v) and not n.startswith("_")}
    return sorted(names)


def has_sufficient_stats(fam) -> bool:
    """Whether accumulating stages may keep statistics instead of a pool (SufficientStats)."""
    return isinstance(fam, SufficientStats)


def has_local_coordinates(fam) -> bool:
    """Whether the engine generates and fits in the generating model's own frame (LocalCoordinates)."""
    return isinstance(fam, LocalCoordinates)


def has_fit_in_pieces(fam) -> bool:
    """Whether the family's fit can be stepped lane by lane (FitInPieces)."""
    return isinstance(fam, FitInPieces)


def chain_view(fam, key, source: Source, n_samples: int) -> Source:
    """The source as one chain sees it: the family's chain_source, else its held-out points (heldout_per_chain)."""
    if isinstance(fam, ChainSource):
        return fam.chain_source(key, source, n_samples)
    return heldout_per_chain(fam, key, source)


def recorded_params(fam, params):
    """What a run records of the carried params: the family's record_params(params), else the params."""
    return fam.record_params(params) if isinstance(fam, RecordParams) else params


def resized_params(fam, params, like):
    """Generation 0's params in the shape of later generations' (`like`): resize_params, else unchanged."""
    return fam.resize_params(params, like) if isinstance(fam, ResizeParams) else params


def execution_choices(fam) -> dict:
    """The code paths a family resolves now ({} for a family with one path)."""
    return fam.execution_choices() if isinstance(fam, ExecutionChoices) else {}


def heldout_size(fam) -> int:
    """Held-out real points a parametric source gets per chain (0 for a family without HeldOut)."""
    return fam.heldout_size if isinstance(fam, HeldOut) else 0


class FamilyBase:
    """Defaults every built-in family shares (a family need not inherit it: the protocol is what counts)."""

    heldout_size = 0

    @property
    def has_stats(self) -> bool:
        """Kept for stages that still read it: the same as has_sufficient_stats(self) (built-ins set it)."""
        return has_sufficient_stats(self)

    @property
    def point_shape(self):
        """One point's shape; for pytree points (point_struct), the pytree of the leaves' shapes."""
        return jax.tree_util.tree_map(lambda s: tuple(s.shape), self.point_struct)

    @property
    def point_dtype(self):
        """One point's dtype; for pytree points (point_struct), the pytree of the leaves' dtypes."""
        return jax.tree_util.tree_map(lambda s: s.dtype, self.point_struct)

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
    if source.heldout is not None or source.params is None or not heldout_size(fam):
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
    if isinstance(fam, PointStruct):
        return fam.point_struct
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

