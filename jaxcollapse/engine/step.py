"""One generation of one chain, pure: the unit the program vmaps over chains and scans over generations.

A family with generate_local / fit_local (the Gaussian) hands its generated points' coordinates in the
generating model's own frame along; when the stage passes those same points on (replace, reweighting
filters: the training set's x is the batch's x), the fit uses them and follows collapse exactly.

Keys: generation g of a chain uses fold_in(chain_key, g), split into (generate, real, stage, fit);
the chain's own view of the source (family.chain_source: held-out points, a fixed design) and the
metrics key come from two more fold_ins of the chain key, so nothing depends on how the run is chunked.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import types
from jaxcollapse.families import base as family_base
from jaxcollapse.families.base import zero_points
from jaxcollapse.stages.base import stage_record
from jaxcollapse.types import Context, Source, TrainingSet

HELDOUT_STREAM = 0xFFFFFFFF   # fold_in(chain_key, .) for the chain's view of the source (family.chain_source)
METRICS_STREAM = 0xFFFFFFFE   # fold_in(chain_key, .) for the chain's metrics key (the same every generation)


class ChainCarry(NamedTuple):
    """Everything one chain carries from generation to generation."""

    key: Any          # the chain's key
    params: Any       # the current model
    stage: Any        # the stage's state
    source_fields: Any  # {Source field: value} that family.chain_source drew for this chain ({} if none)
    snapshots: Any    # [n_snapshots + 1, n_batch, ...]; the last slot absorbs non-snapshot writes


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static settings of the compiled program (hashable)."""

    n_samples: int
    n_batch: int                    # synthetic points generated per generation (a filter may ask for more)
    n_generations: int
    record: Any                     # None | tuple of names | callable(params) -> dict
    snapshot_at: tuple[int, ...]
    settings: Any = None            # the ExecutionSettings the program is traced under (in its cache key)


def chain_source(family, source: Source, chain_key, n_samples: int) -> tuple[Source, dict]:
    """The source as this chain sees it (family.chain_source), and the fields the chain must carry.

    The carried fields are those the hook replaced (held-out points, a fixed design); shared ones stay
    shared, so a real data pool is never copied per chain.
    """
    key = jax.random.fold_in(chain_key, HELDOUT_STREAM)
    seen = family_base.chain_view(family, key, source, n_samples)
    fields = {name: getattr(seen, name) for name in Source._fields if getattr(seen, name) is not getattr(source, name)}
    return seen, fields


def recorded_params(family, params):
    """What a run records of the carried params: family.record_params(params) if it has one, else params."""
    return family_base.recorded_params(family, params)


def _record(family, spec: Spec, params, source, info, chain_key, stage_metrics):
    """(params or None, metrics, info) kept for this generation; the stage's own numbers always join the metrics."""
    if callable(spec.record):
        return None, _with_stage(dict(spec.record(params)), stage_metrics), info
    metrics = family.metrics(jax.random.fold_in(chain_key, METRICS_STREAM), params, source)
    if spec.record is None:
        return recorded_params(family, params), _with_stage(metrics, stage_metrics), info
    fields = recorded_params(family, params)._asdict()
    chosen = {name: fields[name] if name in fields else metrics[name] for name in spec.record
              if name not in stage_metrics}
    return None, _with_stage(chosen, stage_metrics), info


def _with_stage(metrics: dict, stage_metrics: dict) -> dict:
    clash = sorted(set(metrics) & set(stage_metrics))
    if clash:
        raise ValueError(f"the stage records {clash}, names the family's metrics or record= already use")
    return {**metrics, **stage_metrics}


def _snapshot(spec: Spec, snapshots, generation, x):
    if not spec.snapshot_at:
        return snapshots
    table = np.full(spec.n_generations + 1, len(spec.snapshot_at), np.int32)
    table[list(spec.snapshot_at)] = np.arange(len(spec.snapshot_at))
    slot = jnp.asarray(table)[generation]
    return jax.tree_util.tree_map(
        lambda s, a: jax.lax.dynamic_update_index_in_dim(s, _fit_rows(a, s.shape[1]).astype(s.dtype), slot, axis=0),
        snapshots, x)


def _fit_rows(a, rows: int):
    """Generation 0's real sample has n_samples rows, later batches n_batch: pad the shorter."""
    if a.shape[0] == rows:
        return a
    return jnp.zeros((rows,) + a.shape[1:], a.dtype).at[: a.shape[0]].set(a)


def _generate(family, key, params, n: int, source):
    """(points, their coordinates in the generating model's own frame, or None if the family has no fit_local)."""
    if family_base.has_local_coordinates(family):
        return family.generate_local(key, params, n, source)
    return family.generate(key, params, n, source), None


def _stored(tree, generation):
    """tree unchanged, but stored once: XLA:CPU otherwise fuses the random draws (the inverse error
    function) into every loop that reads the points (the scores, the fit's two sums), and computes them
    there again; it drops an optimization_barrier before fusing. A while loop whose body it cannot prove
    the identity keeps its operand: the body runs once (generation >= 0) and leaves every point as it is
    (i == generation + 1 never holds there). On the filter_top benchmark: 2.73x -> 2.49x the unfiltered
    chain's CPU time (benchmarks/RESULTS.md)."""
    runs = (jnp.asarray(generation) >= 0).astype(jnp.int32)

    def body(carry):
        i, points = carry
        return i + 1, jax.tree_util.tree_map(lambda a: jnp.where(i == generation + 1, jnp.zeros_like(a), a), points)

    return jax.lax.while_loop(lambda carry: carry[0] < runs, body, (jnp.zeros((), jnp.int32), tree))[1]


def _fit(family, key, training: TrainingSet, init, synthetic=None, local=None):
    if training.stats is not None:
        return family.fit_stats(training.stats)
    if local is not None and training.x is synthetic:
        # the stage handed on this generation's own points (replace, a reweighting filter): fit them in the
        # generating model's coordinates, exact however far the chain has collapsed
        return family.fit_local(key, local, training.w, init)
    return family.fit(key, training.x, training.w, init)


def start_one(family, stage, source, chain_key, spec: Spec):
    """Generation 0: fit on a real sample."""
    k_real, k_fit = jax.random.split(jax.random.fold_in(chain_key, 0))
    shared_source = source
    source, source_fields = chain_source(family, source, chain_key, spec.n_samples)
    real = types.draw_real(family, source, k_real, spec.n_samples)
    params, info = family.fit(k_fit, real, types.weights(spec.n_samples), None)
    snapshots = None
    if spec.snapshot_at:
        rows = max(spec.n_batch, spec.n_samples)
        snapshots = jax.tree_util.tree_map(lambda z: jnp.stack([z] * (len(spec.snapshot_at) + 1)),
                                           zero_points(family, rows))
        snapshots = _snapshot(spec, snapshots, 0, real)
    ctx = Context(family, params, source, jnp.asarray(0, jnp.int32), spec.n_generations, spec.n_samples, k_real)
    state = stage.init(real, ctx)
    carry = ChainCarry(chain_key, params, state, source_fields, snapshots)
    if family_base.declares(family, "resize_params"):
        # params that hold their training set (KDE) take the shape of later generations' training sets
        later = jax.eval_shape(lambda c: step_one(family, stage, shared_source, spec, c, 1)[0].params, carry)
        params = family_base.resized_params(family, params, later)
        carry = carry._replace(params=params)
    return carry, _record(family, spec, params, source, info, chain_key, stage_record(stage, state))


def step_one(family, stage, source, spec: Spec, carry: ChainCarry, generation):
    """Generation g >= 1: fit on what the previous model generated, as the stage forms it."""
    carry, todo = prepare_fit(family, stage, source, spec, carry, generation)
    params, info = _fit(family, todo.key, todo.training, carry.params, todo.synthetic, todo.local)
    return conclude_fit(family, stage, source, spec, carry, params, info)


class FitTodo(NamedTuple):
    """A generation's fit, prepared: its key and training set (and the generated points, for fit_local)."""

    key: Any
    training: TrainingSet
    synthetic: Any
    local: Any


def prepare_fit(family, stage, source, spec: Spec, carry: ChainCarry, generation):
    """Generation g's first half: generate from the carried model, let the stage form the training set.
    (carry with the stage's new state and the snapshot, FitTodo); the fit then happens elsewhere."""
    k_gen, k_real, k_stage, k_fit = jax.random.split(jax.random.fold_in(carry.key, generation), 4)
    source = with_chain_fields(source, carry)
    synthetic, local = _generate(family, k_gen, carry.params, spec.n_batch, source)
    if getattr(stage, "stores_batch", False):   # a stage that reads the points more than once (filter_top)
        synthetic, local = _stored((synthetic, local), generation)
    ctx = Context(family, carry.params, source, generation, spec.n_generations, spec.n_samples, k_real)
    update = getattr(stage, "update_to_fit", stage.update)   # the last stage: its training set goes to the fit
    state, training = update(k_stage, carry.stage, TrainingSet(synthetic, types.weights(spec.n_batch)), ctx)
    snapshots = _snapshot(spec, carry.snapshots, generation, synthetic)
    return carry._replace(stage=state, snapshots=snapshots), FitTodo(k_fit, training, synthetic, local)


def conclude_fit(family, stage, source, spec: Spec, carry: ChainCarry, params, info):
    """Generation g's second half: carry the fitted model on and record it. (carry, record)."""
    carry = carry._replace(params=params)
    source = with_chain_fields(source, carry)
    return carry, _record(family, spec, params, source, info, carry.key, stage_record(stage, carry.stage))


def with_chain_fields(source: Source, carry: ChainCarry) -> Source:
    """The source as this chain sees it (its own held-out points or design, carried)."""
    return source._replace(**carry.source_fields) if carry.source_fields else source
