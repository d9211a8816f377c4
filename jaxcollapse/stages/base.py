"""The stage protocol: what forms a generation's training set, optax-like and composable.

A stage is a frozen dataclass (made with @stage) with two pure methods:

    init(real, ctx) -> state                       after generation 0, fitted on `real`
    update(key, state, batch, ctx) -> (state, TrainingSet)

`batch` is a TrainingSet of this generation's synthetic points (weights 1); a stage returns the
training set it forms (drop a point by giving it weight 0: shapes stay static). `ctx` is a
types.Context: the family, the current model, the source (held-out data included).

Fields are traced numbers (a scalar, or one value per chain: a sweep is then one vmapped run and
a new value never recompiles), `shared` arrays (the same for every chain), or `static` settings
that fix shapes or code (ints, strings, functions). Optional methods:

    batch_size(n) -> int      how many points the stage needs to hand on n (a filter asks for more)
    check(n_samples)          host-side validation against the run's settings (raise ValueError)
    pool_bytes(family, n_chains, n_generations, n_samples) -> int   memory kept per run
    record(state) -> dict     numbers to keep per chain and generation (e.g. the real share used),
                              stored in Result.metrics under their names whatever `record=` says
    update_to_fit(key, state, batch, ctx)   update when no stage follows (the fit takes the training
                              set as is): may hand on more points than asked, the extra with weight 0
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks
from jaxcollapse.stages.registry import register_stage
from jaxcollapse.types import Context, TrainingSet


@runtime_checkable
class Stage(Protocol):
    def init(self, real, ctx: Context) -> Any: ...

    def update(self, key, state, batch: TrainingSet, ctx: Context) -> tuple[Any, TrainingSet]: ...


def stage(cls=None, *, static: tuple[str, ...] = (), shared: tuple[str, ...] = (), name: str | None = None):
    """Class decorator: a frozen dataclass registered as a pytree, with default optional methods.

    Fields not named in `static` are pytree leaves; those not in `shared` are per-chain numbers.
    name: register the class as a stage kind a study's TOML may name (its fields described by
    dataclasses.field(metadata={"toml": ...}) are the TOML keys; see stages/registry.py).
    """

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        cls._static_fields, cls._shared_fields = tuple(static), tuple(shared)
        for method, default in (("batch_size", _batch_size), ("check", _check), ("pool_bytes", _pool_bytes),
                                ("record", _record), ("update_to_fit", _update_to_fit)):
            if not hasattr(cls, method):
                setattr(cls, method, default)
        data = [n for n in names if n not in static]
        cls = jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=list(static))
        if name is not None:
            if not hasattr(cls, "name"):
                cls.name = name
            register_stage(name)(cls)
        return cls

    return wrap if cls is None else wrap(cls)


def _batch_size(self, n: int) -> int:
    return n


def _check(self, n_samples: int) -> None:
    del n_samples


def _pool_bytes(self, family, n_chains, n_generations, n_samples) -> int:
    return 0


def _record(self, state) -> dict:
    return {}


def _update_to_fit(self, key, state, batch, ctx):
    return self.update(key, state, batch, ctx)


def stage_record(stage_obj, state) -> dict:
    """The stage's record(state) (none for a stage without the hook)."""
    record = getattr(stage_obj, "record", None)
    return {} if record is None else dict(record(state))


def per_chain(stage_obj, n_chains: int):
    """The stage with every leaf given a leading chain axis (numbers checked: scalar or [n_chains])."""
    if isinstance(stage_obj, (tuple, list)):
        return type(stage_obj)(per_chain(s, n_chains) for s in stage_obj)
    if not dataclasses.is_dataclass(stage_obj):
        raise ValueError(f"stage must be made with jaxcollapse.stage (a dataclass), got {stage_obj!r}")
    changes = {}
    for field in dataclasses.fields(stage_obj):
        if field.name in stage_obj._static_fields:
            continue
        value = getattr(stage_obj, field.name)
        if isinstance(value, (tuple, list)) and value and all(dataclasses.is_dataclass(v) for v in value) \
                or dataclasses.is_dataclass(value):
            changes[field.name] = per_chain(value, n_chains)
        elif field.name in stage_obj._shared_fields:
            changes[field.name] = jax.tree_util.tree_map(
                lambda a: jnp.broadcast_to(jnp.asarray(a), (n_chains,) + jnp.shape(a)), value)
        else:
            changes[field.name] = _number_per_chain(field.name, value, n_chains)
    return dataclasses.replace(stage_obj, **changes)


def _number_per_chain(name: str, value, n_chains: int):
    if _checks.is_concrete(value):
        array = np.asarray(value, dtype=float)
        if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != n_chains):
            raise ValueError(f"{name} must be a scalar or have one value per chain ({n_chains}), "
                             f"got shape {array.shape}")
    value = jnp.asarray(value, jnp.result_type(float))
    return jnp.broadcast_to(value, (n_chains,))


def number(name: str, value, low: float, high: float, **open_ends):
    """A stage's number, checked host-side (scalar or a list of per-chain values) and kept as given."""
    if isinstance(value, (list, tuple)):
        value = np.asarray(value, dtype=float)
    _checks.number_in(name, value, low, high, **open_ends)
    return value


# ---------------------------------------------------------------- composition
class PipelineState(NamedTuple):
    states: tuple


@stage
class Pipeline:
    """Stages applied in order: each one's training set is the next one's batch.

    Filters and verifiers act on the synthetic batch, so they come first; a mixing stage
    (keep_real, accumulate, ...) that adds real or past data comes last.
    """

    stages: tuple

    def init(self, real, ctx):
        return PipelineState(tuple(s.init(real, ctx) for s in self.stages))

    def update(self, key, state, batch, ctx):
        return self._update(key, state, batch, ctx, to_fit=False)

    def update_to_fit(self, key, state, batch, ctx):
        return self._update(key, state, batch, ctx, to_fit=True)

    def _update(self, key, state, batch, ctx, to_fit: bool):
        keys = jax.random.split(key, len(self.stages))
        states = []
        for i, (k, s, st) in enumerate(zip(keys, self.stages, state.states)):
            last = to_fit and i == len(self.stages) - 1
            st, batch = getattr(s, "update_to_fit", s.update)(k, st, batch, ctx) if last else s.update(k, st, batch, ctx)
            if batch.stats is not None and i < len(self.stages) - 1:
                raise ValueError(f"{type(s).__name__} hands on sufficient statistics; only the last stage may")
            states.append(st)
        return PipelineState(tuple(states)), batch

    @property
    def stores_batch(self) -> bool:
        """Whether a stage asks the engine to store the generated points once (filter_top)."""
        return any(getattr(s, "stores_batch", False) for s in self.stages)

    def batch_size(self, n: int) -> int:
        for s in reversed(self.stages):
            n = s.batch_size(n)
        return n

    def check(self, n_samples: int) -> None:
        n = n_samples
        for s in reversed(self.stages):
            s.check(n)
            n = s.batch_size(n)

    def pool_bytes(self, family, n_chains, n_generations, n_samples) -> int:
        return sum(s.pool_bytes(family, n_chains, n_generations, n_samples) for s in self.stages)

    def record(self, state) -> dict:
        out = {}
        for s, st in zip(self.stages, state.states):
            for name, value in stage_record(s, st).items():
                if name in out:
                    raise ValueError(f"two stages of the pipeline record {name!r}")
                out[name] = value
        return out

    @property
    def name(self) -> str:
        return " -> ".join(describe(s) for s in self.stages)


def pipeline(*stages):
    """Compose stages: `jc.pipeline(my_filter, jc.keep_real(0.1))`."""
    if not stages:
        raise ValueError("pipeline needs at least one stage")
    for s in stages:
        if not isinstance(s, Stage) or not dataclasses.is_dataclass(s):
            raise ValueError(f"every pipeline stage must be a jaxcollapse stage (made with @jc.stage), got {s!r}")
    return Pipeline(tuple(stages))


def describe(stage_obj) -> str:
    name = getattr(stage_obj, "name", None)
    return name if isinstance(name, str) else type(stage_obj).__name__
