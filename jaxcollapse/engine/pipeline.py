"""Generations pipelined lane by lane: a chain whose fit has finished moves on to its next generation
while other chains' fits still iterate.

Scanning generations with the chains vmapped makes every chain wait, each generation, for the slowest
fit of that generation (EM iteration counts are heavy-tailed: mean ~45, max ~400 in the paper's
setting). Here each lane (chain) carries its own generation and its fit in progress. Every trip:
  1. one iteration of every lane still fitting: all lanes in place while many run, only the running
     ones (gathered in blocks) once few do (on an accelerator always all in place);
  2. lanes whose fit has finished are taken in groups of `group` (a group is gathered, its fits
     concluded and recorded, their next generations prepared, their fits begun, scattered back); a
     finished lane waits, frozen, until a group fills (or its lanes are a share of the active ones: due()).
A chain's numbers are those of the scanned program: the same per-lane functions, keys and order
(engine/step.py's prepare_fit / conclude_fit around the family's fit in pieces), in other batches.
A chunk ends when its slowest chain is done, so long chunks pay. The schedule setting (settings.py) picks where
this runs (by default on accelerators: on a CPU the scan's queued EM lanes are faster, RESULTS.md).

A family opts in with the fit in pieces (one chain each, but fit_iterate takes a batch):
  fit_begin(key, x, w, init) -> (state, data)   the fit's start, initialisation included; data stays fixed
  fit_iterate(states, datas) -> states           one iteration of a batch (leading axis); finished ones unchanged
  fit_running(state) -> bool                     not yet finished
  fit_end(state, data) -> (params, FitInfo)      what fit() would have returned
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcollapse.engine.step import conclude_fit, prepare_fit
from jaxcollapse.families import base as family_base
from jaxcollapse.families.em.compaction import block_sizes

HOOKS = ("fit_begin", "fit_iterate", "fit_running", "fit_end")   # families/base.FitInPieces
COMPACT_SHARE = 0.34   # step only the running lanes (gathered) once fewer than this share of the lanes run


def pipelines(family) -> bool:
    """Whether the engine runs this family's generations lane by lane (it has the fit in pieces, and its
    fit is the only one it has: no sufficient statistics, no fit in the generating model's own frame)."""
    return (family_base.has_fit_in_pieces(family) and not family_base.has_sufficient_stats(family)
            and not family_base.has_local_coordinates(family))


class LaneLayout(NamedTuple):
    block: int     # lanes stepped together once few run (all lanes: always all in place)
    group: int     # finished lanes concluded together
    partial: int   # a partial group is concluded once its lanes are 1 / partial of the active ones


def lane_layout(lanes: int, layout: str) -> LaneLayout:
    """The loop's sizes. Larger groups pay a group's fixed cost less often, smaller ones leave finished
    lanes waiting fewer iterations. On a CPU a group costs as much as its lanes: small groups, partial
    ones early. On an accelerator a group costs its kernel launches whatever its size: half the lanes,
    partial ones once half the active lanes wait (replayed on 2,048 chains x 2,050 recorded generations:
    as many trips within 13%, 3.6x fewer groups than an eighth of the lanes with partial ones at 1 / 8,
    benchmarks/RESULTS.md); running lanes stepped an eighth at a time once few run (the paper's run at
    10,000 chains on one H100: 55.1 s against 69.4 s stepping all lanes every trip)."""
    if layout == "cpu":
        return LaneLayout(block_sizes(lanes)[0], int(min(lanes, max(4, min(64, lanes // 16)))), 8)
    return LaneLayout(int(min(lanes, max(64, lanes // 8))), int(min(lanes, max(64, lanes // 2))), 2)


def due(n_ready, n_active, layout: LaneLayout):
    """Whether finished lanes are concluded now: a full group, or a partial one once they are a share of
    the lanes still active (with fewer active lanes than a group, waiting for a full one would hold
    every lane back for the slowest fit of its generation)."""
    return (n_ready >= layout.group) | ((n_ready > 0) & (n_ready * layout.partial >= n_active))


def advance_lanes(family, stage, source, spec, carry, first_generation, n_valid, n_steps: int, layout: str = "cpu"):
    """Generations first_generation .. first_generation + n_valid - 1 of a batch of chains (leading axis on
    carry and stage): (carry, records [chains, n_steps, ...]; steps past n_valid hold zeros)."""
    tree_map = jax.tree_util.tree_map
    B = jax.tree_util.tree_leaves(carry)[0].shape[0]
    end = first_generation + n_valid
    lanes = jnp.arange(B, dtype=jnp.int32)
    sizes = lane_layout(B, layout)
    block, group = sizes.block, sizes.group

    def prepare(c, st, generation):
        c, todo = prepare_fit(family, st, source, spec, c, generation)
        return (c, *family.fit_begin(todo.key, todo.training.x, todo.training.w, c.params))

    def conclude(c, st, fit, data):
        params, info = family.fit_end(fit, data)
        return conclude_fit(family, st, source, spec, c, params, info)

    generation = jnp.broadcast_to(jnp.asarray(first_generation, jnp.int32), (B,))
    carry, fits, data = jax.vmap(prepare)(carry, stage, generation)
    record_shapes = jax.eval_shape(jax.vmap(conclude), carry, stage, fits, data)[1]
    records = tree_map(lambda s: jnp.zeros((B, n_steps) + s.shape[1:], s.dtype), record_shapes)

    def fitting(fits, generation):
        return (generation < end) & jax.vmap(family.fit_running)(fits)

    def step_running(fits, data, run):
        """One iteration of the running lanes only, gathered `block` at a time (the rest are not touched)."""
        n_run = jnp.sum(run, dtype=jnp.int32)
        pos = jnp.where(run, jnp.cumsum(run) - 1, n_run + jnp.cumsum(~run) - 1)
        listed = jnp.zeros_like(lanes).at[pos].set(lanes, unique_indices=True)
        # past the running lanes the list holds finished ones: stepped, they stay as they are
        listed = jnp.concatenate([listed, jnp.broadcast_to(listed[-1:], (block,))])

        def one_block(i, fits):
            idx = jax.lax.dynamic_slice_in_dim(listed, i * block, block)
            part = family.fit_iterate(*jax.lax.optimization_barrier(tree_map(lambda a: a[idx], (fits, data))))
            return tree_map(lambda full, p: full.at[idx].set(p), fits, part)

        return jax.lax.fori_loop(0, (n_run + block - 1) // block, one_block, fits)

    def refill(c):
        """Conclude the first `group` finished lanes (fewer, padded with repeats: see due())."""
        carry, fits, data, generation, records = c
        ready = (generation < end) & ~jax.vmap(family.fit_running)(fits)
        pos = jnp.where(ready, jnp.cumsum(ready) - 1, group)
        idx = jnp.zeros((group,), jnp.int32).at[pos].set(lanes, mode="drop")
        n_ready = jnp.sum(ready, dtype=jnp.int32)
        # a lane listed twice is concluded twice from the same state: the same values, written twice
        idx = jnp.where(jnp.arange(group) < n_ready, idx, idx[0])
        take = lambda a: a[idx]  # noqa: E731
        c_part, st_part, fit_part, data_part, gen_part = tree_map(take, (carry, stage, fits, data, generation))
        c_part, record = jax.vmap(conclude)(c_part, st_part, fit_part, data_part)
        records = tree_map(lambda buf, r: buf.at[idx, gen_part - first_generation].set(r), records, record)
        gen_part = gen_part + 1
        more = gen_part < end
        fresh = jax.vmap(prepare)(c_part, st_part, jnp.minimum(gen_part, end - 1))
        # a lane past its chunk keeps its concluded carry and its finished fit
        c_part, fit_part, data_part = tree_map(
            lambda n, o: jnp.where(more.reshape(more.shape + (1,) * (n.ndim - 1)), n, o),
            fresh, (c_part, fit_part, data_part))
        put = lambda full, p: full.at[idx].set(p)  # noqa: E731
        carry, fits, data = tree_map(put, (carry, fits, data), (c_part, fit_part, data_part))
        return carry, fits, data, generation.at[idx].set(gen_part), records

    def refill_due(c):
        _, fits, _, generation, _ = c
        active = generation < end
        n_ready = jnp.sum(active & ~jax.vmap(family.fit_running)(fits), dtype=jnp.int32)
        return due(n_ready, jnp.sum(active, dtype=jnp.int32), sizes)

    def trip(c):
        carry, fits, data, generation, records = c
        run = fitting(fits, generation)
        if block < B:
            fits = jax.lax.cond(jnp.sum(run, dtype=jnp.int32) >= int(COMPACT_SHARE * B),
                                lambda f: family.fit_iterate(f, data), lambda f: step_running(f, data, run), fits)
        else:
            fits = family.fit_iterate(fits, data)
        return jax.lax.while_loop(refill_due, refill, (carry, fits, data, generation, records))

    c = jax.lax.while_loop(refill_due, refill, (carry, fits, data, generation, records))
    carry, _, _, _, records = jax.lax.while_loop(lambda c: jnp.any(c[3] < end), trip, c)
    return carry, records
