"""The compiled program: chains vmapped (and sharded), generations scanned, long runs in chunks.

Keys: chain c's key is split from the run key (a run of one chain uses the run key itself, so
`simulate(res.chain_key(i), ..., n_chains=1)` replays chain i); generation g of a chain uses
fold_in(chain_key, g). Nothing random depends on the chunking, so chunked == one-piece.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks, settings
from jaxcollapse import sharding as sharding_lib
from jaxcollapse._precision import full_float32
from jaxcollapse.engine import pipeline
from jaxcollapse.engine.result import Result
from jaxcollapse.engine.step import ChainCarry, Spec, chain_source, recorded_params, start_one, step_one
from jaxcollapse.families.base import REGISTRY, Family, execution_choices, make_source, tracing_one_off, zero_points
from jaxcollapse.stages import base as stages_base
from jaxcollapse.stages import mixing
from jaxcollapse.types import Context

# How generations are scheduled for families with their fit in pieces (engine/pipeline.py) is the schedule
# setting (settings.py): lane by lane on an accelerator, scanned on a CPU by default (measured faster there:
# benchmarks/RESULTS.md). The same records either way (bit for bit under jax 0.9; to rounding under
# jax >= 0.10, whose CPU kernels round a GMM's sums differently with the batch size: tests/test_pipeline.py).
_LAYOUTS = {"scan": "scan", "lanes": "cpu", "lanes-accelerator": "accelerator"}


def resolve_schedule(family) -> settings.Choice:
    """The schedule this family's generations run with under the current settings, and why."""
    return settings.resolve_schedule(bool(pipeline.pipelines(family)))


def schedule(family) -> str:
    """"scan" or the lane layout ("cpu" / "accelerator") this family's generations run with now."""
    return _LAYOUTS[resolve_schedule(family).value]


def resolve_execution(family, plugins=None) -> settings.Resolved:
    """What a program of this family resolves now: its execution choices and why, x64, the versions."""
    choices = execution_choices(family)
    return settings.Resolved(settings.current(), choices.get("em_backend"), resolve_schedule(family),
                             choices.get("sums"), bool(jax.config.jax_enable_x64), plugins=dict(plugins or {}))


class ChainState(NamedTuple):
    """A run between chunks: the batched carry and the last generation done."""

    carry: ChainCarry
    generation: int


_TRACES = [0]   # how many times _start_all / _advance_all were traced (each a new compiled program)


def trace_count() -> int:
    """How many engine programs (generation 0, a chunk of generations) this process has traced so far.

    A run that reuses compiled programs leaves it unchanged: jaxcollapse.testing reads it to check that a
    new value of a traced number (a family's lam, a stage's fraction) runs without compiling anew."""
    return _TRACES[0]


def _start_all(family, stage, source, chain_keys, spec, mesh=None):
    _TRACES[0] += 1
    def all_chains(shared, chain_keys, stage):
        family, source = shared
        return jax.vmap(lambda key, st: start_one(family, st, source, key, spec))(chain_keys, stage)

    with tracing_one_off():   # generation 0 runs once: a smaller program (families/base.py)
        return sharding_lib.over_chains(all_chains, mesh, (family, source), chain_keys, stage)


def _advance_all(carry, first_generation, n_valid, family, stage, source, spec, n_steps, mesh=None, lanes="scan"):
    """n_steps generations per chain; steps past n_valid are skipped, so a short last chunk reuses the program.
    lanes: "scan", or the layout of engine/pipeline.py's lane-by-lane schedule ("cpu", "accelerator")."""
    _TRACES[0] += 1

    def all_chains(shared, carry, stage):
        family, source, first_generation, n_valid = shared
        if lanes != "scan":
            return pipeline.advance_lanes(family, stage, source, spec, carry, first_generation, n_valid, n_steps,
                                          layout=lanes)

        def one_chain(chain_carry, st):
            def step(c, offset):
                return step_one(family, st, source, spec, c, first_generation + offset)

            def body(c, offset):
                shapes = []

                def run(c, offset):
                    out = step(c, offset)
                    shapes.append(jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), out[1]))
                    return out

                def skipped(c, offset):
                    # the records' shapes from the step's trace just before (switch traces its branches in
                    # order): tracing the step again costs ~0.2 s of a GMM's compile, ~1.1 s of a transformer's
                    records = shapes[0] if shapes else jax.eval_shape(step, c, offset)[1]
                    return c, _zeros_like(records)

                return jax.lax.switch((offset >= n_valid).astype(jnp.int32), [run, skipped], c, offset)

            return jax.lax.scan(body, chain_carry, jnp.arange(n_steps))

        return jax.vmap(one_chain)(carry, stage)

    shared = (family, source, first_generation, n_valid)
    return sharding_lib.over_chains(all_chains, mesh, shared, carry, stage)


def _zeros_like(shapes):
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


_start_jit = jax.jit(_start_all, static_argnames=("spec", "mesh"))
_advance_jit = jax.jit(_advance_all, static_argnames=("spec", "n_steps", "mesh", "lanes"), donate_argnums=(0,))


class ChainProgram:
    """A validated study: start() fits generation 0, advance() runs further chunks of generations.

    simulate() drives it; the study runner drives it too, to checkpoint between chunks.
    """

    def __init__(self, family, source, *, n_chains, n_generations, n_samples,
                 regime=None, record=None, snapshot_at=(), max_pool_bytes=None, devices=None):
        self.n_chains = _checks.positive_int("n_chains", n_chains)
        self.layout = sharding_lib.ChainLayout.build(devices, self.n_chains)
        self.n_generations = _checks.positive_int("n_generations", n_generations, minimum=0)
        self.n_samples = _checks.positive_int("n_samples", n_samples)
        stage = mixing.replace() if regime is None else regime
        if not isinstance(stage, stages_base.Stage):
            raise ValueError("regime must be a stage: jaxcollapse.replace(), accumulate(), accumulate_subsample(), "
                             f"keep_real(f), fresh_real(f), a jc.pipeline(...) or your own @jc.stage, got {stage!r}")
        if not isinstance(family, Family):
            raise ValueError(f"family must be a jaxcollapse family ({', '.join(c.__name__ for c in REGISTRY.values())}"
                             f", or your own implementing jaxcollapse.Family), got {family!r}")
        family.check_settings(self.n_samples)
        self.source = make_source(family, source)
        if self.source.data is not None and _n_points(self.source.data) < self.n_samples:
            raise ValueError(f"n_samples must be <= the number of real data points "
                             f"({_n_points(self.source.data)}) when source is a data array, got {self.n_samples}")
        self.family = family
        stage.check(self.n_samples)
        self.stage = stage  # as given; self.regime is its per-chain copy the compiled program takes
        n_batch = _checks.positive_int("the stage's batch_size(n_samples)", stage.batch_size(self.n_samples))
        self.regime = stages_base.per_chain(stage, self.n_chains)
        snapshot_at = tuple(sorted({int(g) for g in snapshot_at}))
        if any(g < 0 or g > self.n_generations for g in snapshot_at):
            raise ValueError(f"snapshot_at must hold generations in [0, {self.n_generations}], got {snapshot_at}")
        self.settings = settings.current()  # traced under these, whatever is in force when start() runs
        self.spec = Spec(self.n_samples, n_batch, self.n_generations, self._check_record(record), snapshot_at,
                         self.settings)
        self._check_pool(max_pool_bytes)
        # per-chain leaves sharded over the mesh, the rest copied to every device (no-ops on one device)
        self.regime = self.layout.place(self.regime)
        self.family, self.source = self.layout.replicate((self.family, self.source))
        self.execution = resolve_execution(family)
        self.schedule = _LAYOUTS[self.execution.schedule.value]

    def announce(self) -> None:
        """Log what this program resolved, and why (one line, once per process), when it first computes."""
        settings.announce(f"execution: {self.execution.line()}")

    def _check_record(self, record):
        if record is None or callable(record):
            return record
        if isinstance(record, str):
            record = (record,)
        record = tuple(record)
        allowed = _by_signature((self.family, self.source, self.regime, self.n_samples,
                                 self.n_generations), lambda: set(self.metric_names()) | set(self._param_names()))
        unknown = [name for name in record if name not in allowed]
        if unknown or not record:
            raise ValueError(f"record must name some of {sorted(allowed)}, got {list(record)}")
        return record

    def _param_names(self):
        params = jax.eval_shape(lambda: recorded_params(self.family, self._one_fit()[0]))
        return list(params._fields)

    def _one_fit(self):
        x = zero_points(self.family, self.n_samples)
        return self.family.fit(jax.random.key(0), x, jnp.ones(self.n_samples), None)

    def metric_names(self) -> list[str]:
        """The family's metrics, then the numbers the stage records (its record(state) hook)."""
        one_chain = jax.tree_util.tree_map(lambda a: a[0], self.regime)  # the first chain's stage

        def names():
            source, _ = chain_source(self.family, self.source, jax.random.key(0), self.n_samples)
            params = self._one_fit()[0]
            ctx = Context(self.family, params, source, jnp.asarray(0, jnp.int32), self.n_generations,
                          self.n_samples, jax.random.key(0))
            state = one_chain.init(zero_points(self.family, self.n_samples), ctx)
            return self.family.metrics(jax.random.key(0), params, source), stages_base.stage_record(one_chain, state)

        family_metrics, stage_metrics = jax.eval_shape(names)
        return list(family_metrics) + [name for name in stage_metrics if name not in family_metrics]

    def _check_pool(self, max_pool_bytes):
        needed = self.stage.pool_bytes(self.family, self.n_chains, self.n_generations, self.n_samples)
        limit = _memory_budget() if max_pool_bytes is None else max_pool_bytes
        if needed > limit:
            raise ValueError(
                f"regime {stages_base.describe(self.stage)!r} keeps every point of every generation: "
                f"{needed / 2**30:.2f} GiB for n_chains={self.n_chains}, n_generations={self.n_generations}, "
                f"n_samples={self.n_samples}, over the {limit / 2**30:.2f} GiB allowed (max_pool_bytes); "
                "use fewer chains or generations")

    def chain_keys(self, key):
        key = _as_typed_key(key)
        return key[None] if self.n_chains == 1 else jax.random.split(key, self.n_chains)

    def start(self, key):
        if not isinstance(key, jax.core.Tracer):  # (jax.eval_shape of start computes nothing)
            self.announce()
        with settings.using(self.settings), full_float32():
            carry, records = _start_jit(self.family, self.regime, self.source,
                                        self.layout.place(self.chain_keys(key)), self.spec, mesh=self.layout.mesh)
        return ChainState(carry, 0), _add_generation_axis(self.layout.gather(records))

    def advance(self, state: ChainState, n_steps: int):
        """Run the next n_steps generations (fewer if the run ends sooner); records on the host."""
        n_steps = _checks.positive_int("n_steps", n_steps)
        n_valid = min(n_steps, self.n_generations - state.generation)
        if n_valid <= 0:
            raise ValueError(f"nothing left to run: generation {state.generation} of {self.n_generations}")
        first, n_valid_array = self.layout.replicate(
            (np.asarray(state.generation + 1, np.int32), np.asarray(n_valid, np.int32)))
        self.announce()
        with settings.using(self.settings), full_float32():
            carry, records = _advance_jit(state.carry, first, n_valid_array, self.family, self.regime,
                                          self.source, self.spec, n_steps, mesh=self.layout.mesh, lanes=self.schedule)
        records = jax.tree_util.tree_map(lambda a: a[:, :n_valid], self.layout.gather(records))
        return ChainState(carry, state.generation + n_valid), records

    def host_state(self, state: ChainState) -> ChainState:
        """The state with its carry on the host, trimmed to n_chains (for checkpoints; collective when distributed)."""
        return ChainState(self.layout.gather(state.carry), state.generation)

    def device_state(self, state: ChainState) -> ChainState:
        """A host_state() back on this program's devices (any device count), ready for advance()."""
        return ChainState(self.layout.place(state.carry), state.generation)

    def result(self, state: ChainState, record_chunks: Sequence, wall_seconds=float("nan")) -> Result:
        params, metrics, info = jax.tree_util.tree_map(
            lambda *parts: np.concatenate(parts, axis=1), *record_chunks)
        snapshots = None
        if self.spec.snapshot_at:
            snapshots = jax.tree_util.tree_map(lambda a: a[:, :-1], self.layout.gather(state.carry.snapshots))
        keys = self.layout.gather(state.carry.key)
        return Result(params, metrics, info, snapshots, self.spec.snapshot_at, keys, wall_seconds)


_SIGNATURE_CACHE: dict = {}


def _by_signature(trees, compute):
    """compute(), remembered by the trees' structure and leaf shapes and dtypes (what jax.eval_shape
    sees): naming a run's records traces the fit twice, ~0.4 s of every simulate() call. Trees with
    a leaf that is no array or number (a family that is not a pytree: its settings are invisible
    here) or an unhashable structure are not remembered."""
    leaves, treedef = jax.tree_util.tree_flatten(trees)
    if not all(isinstance(a, (jax.Array, np.ndarray, np.generic, int, float, complex)) for a in leaves):
        return compute()
    key = (treedef, tuple((type(a), np.shape(a), str(getattr(a, "dtype", "")),
                           a if isinstance(a, (int, float, complex)) else None) for a in leaves))
    try:
        hash(key)
    except TypeError:
        return compute()
    if key not in _SIGNATURE_CACHE:
        if len(_SIGNATURE_CACHE) >= 256:
            _SIGNATURE_CACHE.clear()
        _SIGNATURE_CACHE[key] = compute()
    return _SIGNATURE_CACHE[key]


def _n_points(data) -> int:
    return jax.tree_util.tree_leaves(data)[0].shape[0]


def _as_typed_key(key):
    if not isinstance(key, (jax.Array, np.ndarray)):
        raise ValueError(f"key must be jax.random.key(seed) or jax.random.PRNGKey(seed), got {key!r}")
    key = jnp.asarray(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single PRNG key, got shape {key.shape}")
        return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key)
    raise ValueError(f"key must be jax.random.key(seed) or jax.random.PRNGKey(seed), got {key!r}")


def _add_generation_axis(tree):
    return jax.tree_util.tree_map(lambda a: a[:, None], tree)


def _memory_budget() -> int:
    """Half of the default device's memory (GPU limit, or physical RAM on CPU)."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] // 2
    return host_memory_budget()


def host_memory_budget() -> int:
    """Half of this host's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
