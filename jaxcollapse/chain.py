"""simulate(): generations as a lax.scan, chains as a vmap, long runs as a host loop over chunks.

Keys: chain c's key is split from the run key (a run of one chain uses the run key itself, so
`simulate(res.chain_key(i), ..., n_chains=1)` replays chain i); generation g of a chain uses
fold_in(chain_key, g). Nothing random depends on the chunking, so chunked == one-piece.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks
from jaxcollapse import regimes as regimes_lib
from jaxcollapse import sharding as sharding_lib
from jaxcollapse.families.base import FitInfo, SourceRef


class ChainCarry(NamedTuple):
    """Everything one chain carries from generation to generation."""

    key: Any          # the chain's key
    params: Any       # the current model
    regime: Any       # RegimeState
    snapshots: Any    # [n_snapshots + 1, n_samples, ...]; the last slot absorbs non-snapshot writes


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static settings of the compiled program (hashable)."""

    n_samples: int
    n_generations: int
    record: Any                     # None | tuple of names | callable(params) -> dict
    snapshot_at: tuple[int, ...]


class ChainState(NamedTuple):
    """A run between chunks: the batched carry and the last generation done."""

    carry: ChainCarry
    generation: int


# ---------------------------------------------------------------- one chain, pure
def _draw_real(family, reference: SourceRef, key, n):
    if reference.params is not None:
        return family.sample(key, reference.params, n)
    index = jax.random.choice(key, reference.data.shape[0], (n,), replace=False)
    return reference.data[index]


def _fit(family, key, training, init):
    if training.stats is not None:
        return family.fit_stats(training.stats)
    return family.fit(key, training.x, training.w, init)


def _record(family, spec: _Spec, params, reference, info):
    if callable(spec.record):
        return None, dict(spec.record(params)), info
    metrics = family.metrics(params, reference)
    if spec.record is None:
        return params, metrics, info
    fields = params._asdict()
    chosen = {name: fields[name] if name in fields else metrics[name] for name in spec.record}
    return None, chosen, info


def _snapshot(spec: _Spec, snapshots, generation, x):
    if not spec.snapshot_at:
        return snapshots
    table = np.full(spec.n_generations + 1, len(spec.snapshot_at), np.int32)
    table[list(spec.snapshot_at)] = np.arange(len(spec.snapshot_at))
    slot = jnp.asarray(table)[generation]
    return jax.lax.dynamic_update_index_in_dim(snapshots, x.astype(snapshots.dtype), slot, axis=0)


def _start_one(family, regime, reference, chain_key, spec: _Spec):
    """Generation 0: fit on a real sample."""
    k_real, k_fit = jax.random.split(jax.random.fold_in(chain_key, 0))
    real = _draw_real(family, reference, k_real, spec.n_samples)
    n = spec.n_samples
    params, info = family.fit(k_fit, real, jnp.ones(n, jnp.result_type(float)), None)
    snapshots = None
    if spec.snapshot_at:
        snapshots = jnp.zeros((len(spec.snapshot_at) + 1, n) + tuple(family.point_shape), real.dtype)
        snapshots = _snapshot(spec, snapshots, 0, real)
    state = regimes_lib.init_state(regime, family, real, spec.n_generations)
    carry = ChainCarry(chain_key, params, state, snapshots)
    return carry, _record(family, spec, params, reference, info)


def _step_one(family, regime, reference, spec: _Spec, carry: ChainCarry, generation):
    """Generation g >= 1: fit on what the previous model generated (and what the regime adds)."""
    k_gen, k_real, k_regime, k_fit = jax.random.split(jax.random.fold_in(carry.key, generation), 4)
    synthetic = family.generate(k_gen, carry.params, spec.n_samples)
    fresh = _draw_real(family, reference, k_real, spec.n_samples) if regime.kind == "fresh_real" else None
    state, training = regimes_lib.training_set(regime, family, carry.regime, k_regime, synthetic, fresh)
    params, info = _fit(family, k_fit, training, carry.params)
    snapshots = _snapshot(spec, carry.snapshots, generation, synthetic)
    carry = ChainCarry(carry.key, params, state, snapshots)
    return carry, _record(family, spec, params, reference, info)


# ---------------------------------------------------------------- all chains, compiled
def _start_all(family, regime, reference, chain_keys, spec, mesh=None):
    def all_chains(shared, chain_keys, regime):
        family, reference = shared
        start = lambda key, reg: _start_one(family, reg, reference, key, spec)  # noqa: E731
        return jax.vmap(start)(chain_keys, regime)

    return sharding_lib.over_chains(all_chains, mesh, (family, reference), chain_keys, regime)


def _advance_all(carry, first_generation, n_valid, family, regime, reference, spec, n_steps, mesh=None):
    """n_steps generations per chain; steps past n_valid are skipped, so a short last chunk reuses the program."""

    def all_chains(shared, carry, regime):
        family, reference, first_generation, n_valid = shared

        def one_chain(chain_carry, reg):
            def step(c, offset):
                return _step_one(family, reg, reference, spec, c, first_generation + offset)

            def body(c, offset):
                skipped = lambda c, offset: (c, _zeros_like(jax.eval_shape(step, c, offset)[1]))  # noqa: E731
                return jax.lax.cond(offset < n_valid, step, skipped, c, offset)

            return jax.lax.scan(body, chain_carry, jnp.arange(n_steps))

        return jax.vmap(one_chain)(carry, regime)

    shared = (family, reference, first_generation, n_valid)
    return sharding_lib.over_chains(all_chains, mesh, shared, carry, regime)


def _zeros_like(shapes):
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


_start_jit = jax.jit(_start_all, static_argnames=("spec", "mesh"))
_advance_jit = jax.jit(_advance_all, static_argnames=("spec", "n_steps", "mesh"), donate_argnums=(0,))


# ---------------------------------------------------------------- results
@dataclasses.dataclass
class Result:
    """Histories with leading axes [n_chains, n_generations + 1] (one chain: [n_generations + 1])."""

    params: Any                 # the family's params NamedTuple of histories, or None if not recorded
    metrics: dict               # name -> array
    info: FitInfo               # per-fit flags: n_iter, converged, log_lik, finite
    snapshots: Any              # [n_chains, len(snapshot_at), n_samples, ...] or None
    snapshot_at: tuple
    keys: Any                   # chain keys [n_chains]
    wall_seconds: float = float("nan")

    @property
    def n_chains(self) -> int:
        return int(self.keys.shape[0])

    def chain_key(self, i: int):
        return self.keys[i]

    def chain(self, i: int) -> "Result":
        """Chain i alone (no chain axis)."""
        take = lambda tree: jax.tree_util.tree_map(lambda a: a[i], tree)  # noqa: E731
        return dataclasses.replace(
            self, params=take(self.params), metrics=take(self.metrics), info=take(self.info),
            snapshots=None if self.snapshots is None else self.snapshots[i], keys=self.keys[i:i + 1])

    @property
    def failed(self) -> np.ndarray:
        """[n_chains] True where some fit produced non-finite parameters."""
        return ~np.all(np.asarray(self.info.finite), axis=-1)


# ---------------------------------------------------------------- the program
class ChainProgram:
    """A validated study: start() fits generation 0, advance() runs further chunks of generations.

    simulate() drives it; the CLI drives it too, to checkpoint between chunks.
    """

    def __init__(self, family, source, *, n_chains, n_generations, n_samples,
                 regime=None, record=None, snapshot_at=(), max_pool_bytes=None, devices=None):
        self.n_chains = _checks.positive_int("n_chains", n_chains)
        self.layout = sharding_lib.ChainLayout.build(devices, self.n_chains)
        self.n_generations = _checks.positive_int("n_generations", n_generations, minimum=0)
        self.n_samples = _checks.positive_int("n_samples", n_samples)
        regime = regimes_lib.replace() if regime is None else regime
        if not isinstance(regime, regimes_lib.Regime):
            raise ValueError(f"regime must be one of jaxcollapse.{'(), '.join(regimes_lib.KINDS)}(), got {regime!r}")
        if not hasattr(family, "fit") or not hasattr(family, "check_source"):
            raise ValueError(f"family must be a jaxcollapse family (Gaussian, Categorical, GMM, VAE), got {family!r}")
        family.check_settings(self.n_samples)
        if source is None:
            raise ValueError("source is required: the true distribution's params or a real data array")
        self.reference = family.check_source(source)
        if self.reference.data is not None and self.reference.data.shape[0] < self.n_samples:
            raise ValueError(f"n_samples must be <= the number of real data points "
                             f"({self.reference.data.shape[0]}) when source is a data array, got {self.n_samples}")
        self.family = family
        self.regime = self._per_chain_regime(regime)
        snapshot_at = tuple(sorted({int(g) for g in snapshot_at}))
        if any(g < 0 or g > self.n_generations for g in snapshot_at):
            raise ValueError(f"snapshot_at must hold generations in [0, {self.n_generations}], got {snapshot_at}")
        self.spec = _Spec(self.n_samples, self.n_generations, self._check_record(record), snapshot_at)
        self._check_pool(max_pool_bytes)
        # per-chain leaves sharded over the mesh, the rest copied to every device (no-ops on one device)
        self.regime = self.layout.place(self.regime)
        self.family, self.reference = self.layout.replicate((self.family, self.reference))

    def _per_chain_regime(self, regime):
        fraction = np.asarray(regime.fraction, dtype=float)
        if fraction.ndim == 1 and fraction.shape[0] != self.n_chains:
            raise ValueError(f"fraction must be a scalar or have one value per chain ({self.n_chains}), "
                             f"got shape {fraction.shape}")
        if fraction.ndim > 1:
            raise ValueError(f"fraction must be a scalar or a 1-D array, got shape {fraction.shape}")
        fraction = jnp.broadcast_to(jnp.asarray(fraction, jnp.result_type(float)), (self.n_chains,))
        return dataclasses.replace(regime, fraction=fraction)

    def _check_record(self, record):
        if record is None or callable(record):
            return record
        if isinstance(record, str):
            record = (record,)
        record = tuple(record)
        allowed = set(self.metric_names()) | set(self._param_names())
        unknown = [name for name in record if name not in allowed]
        if unknown or not record:
            raise ValueError(f"record must name some of {sorted(allowed)}, got {list(record)}")
        return record

    def _param_names(self):
        params = jax.eval_shape(lambda: self._one_fit()[0])
        return list(params._fields)

    def _one_fit(self):
        x = jnp.zeros((self.n_samples,) + tuple(self.family.point_shape), self.family.point_dtype)
        return self.family.fit(jax.random.key(0), x, jnp.ones(self.n_samples), None)

    def metric_names(self) -> list[str]:
        shapes = jax.eval_shape(lambda: self.family.metrics(self._one_fit()[0], self.reference))
        return list(shapes)

    def _check_pool(self, max_pool_bytes):
        needed = regimes_lib.pool_bytes(self.regime, self.family, self.n_chains, self.n_generations, self.n_samples)
        limit = _memory_budget() if max_pool_bytes is None else max_pool_bytes
        if needed > limit:
            raise ValueError(
                f"regime {self.regime.kind!r} keeps every point of every generation: {needed / 2**30:.2f} GiB for "
                f"n_chains={self.n_chains}, n_generations={self.n_generations}, n_samples={self.n_samples}, "
                f"over the {limit / 2**30:.2f} GiB allowed (max_pool_bytes); use fewer chains or generations")

    def chain_keys(self, key):
        key = _as_typed_key(key)
        return key[None] if self.n_chains == 1 else jax.random.split(key, self.n_chains)

    def start(self, key):
        carry, records = _start_jit(self.family, self.regime, self.reference, self.layout.place(self.chain_keys(key)),
                                    self.spec, mesh=self.layout.mesh)
        return ChainState(carry, 0), _add_generation_axis(self.layout.gather(records))

    def advance(self, state: ChainState, n_steps: int):
        """Run the next n_steps generations (fewer if the run ends sooner); records on the host."""
        n_steps = _checks.positive_int("n_steps", n_steps)
        n_valid = min(n_steps, self.n_generations - state.generation)
        if n_valid <= 0:
            raise ValueError(f"nothing left to run: generation {state.generation} of {self.n_generations}")
        first, n_valid_array = self.layout.replicate(
            (np.asarray(state.generation + 1, np.int32), np.asarray(n_valid, np.int32)))
        carry, records = _advance_jit(state.carry, first, n_valid_array, self.family, self.regime,
                                      self.reference, self.spec, n_steps, mesh=self.layout.mesh)
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
            snapshots = self.layout.gather(state.carry.snapshots)[:, :-1]
        keys = self.layout.gather(state.carry.key)
        return Result(params, metrics, info, snapshots, self.spec.snapshot_at, keys, wall_seconds)


def simulate(key, family, source, *, n_chains: int, n_generations: int, n_samples: int,
             regime=None, record=None, snapshot_at: Sequence[int] = (), chunk_size: int | None = None,
             progress: Callable[[int, int, float], None] | None = None, max_pool_bytes: int | None = None,
             devices=None) -> Result:
    """Run n_chains independent collapse chains of n_generations refits each.

    Args:
      key: a JAX PRNG key (jax.random.key or PRNGKey).
      family: Gaussian(...), Categorical(...), GMM(...), VAE(...).
      source: the true distribution (family.make_params(...)) or a real data array [n, ...].
      n_samples: points drawn per generation (M).
      regime: replace() (default), accumulate(), accumulate_subsample(), keep_real(f), fresh_real(f).
      record: None (params and all metrics), names of params/metrics to keep, or fn(params) -> dict.
      snapshot_at: generations whose fresh training points are stored.
      chunk_size: generations per compiled chunk (default: all in one); results do not depend on it.
      progress: called as progress(generations_done, n_generations, seconds) between chunks.
      devices: where the chain axis lives: None (all devices, of every process after
        jax.distributed.initialize), a count, a list of jax.Device, or a Mesh with axis "chains".
        It is sharded with NamedSharding(mesh, P("chains")); n_chains not divisible by the
        device count is padded with copies of the last chain, then trimmed. Results do not
        depend on it.

    Examples:
      >>> import jax, jaxcollapse as jc
      >>> fam = jc.Gaussian(dim=1, ddof=1)
      >>> src = fam.make_params(mean=[0.0], cov=[[1.0]])
      >>> res = jc.simulate(jax.random.key(0), fam, src, n_chains=8, n_generations=5, n_samples=20)
      >>> res.params.cov.shape
      (8, 6, 1, 1)
    """
    program = ChainProgram(family, source, n_chains=n_chains, n_generations=n_generations, n_samples=n_samples,
                           regime=regime, record=record, snapshot_at=snapshot_at, max_pool_bytes=max_pool_bytes,
                           devices=devices)
    chunk = n_generations if chunk_size is None else _checks.positive_int("chunk_size", chunk_size)
    chunk = min(chunk, max(n_generations, 1))
    began = time.perf_counter()
    state, first = program.start(key)
    chunks = [first]
    while state.generation < n_generations:
        state, records = program.advance(state, chunk)
        chunks.append(records)
        if progress is not None:
            progress(state.generation, n_generations, time.perf_counter() - began)
    return program.result(state, chunks, time.perf_counter() - began)


# ---------------------------------------------------------------- helpers
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
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
