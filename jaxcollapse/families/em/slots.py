"""Step lanes in a fixed block of slots, each refilled from a queue of waiting lanes as it finishes.

chunked_while gathers every block of running lanes, their data included, on every trip (on CPU
that copy and the listing are a large part of a step's cost). Here `slots` lanes are stepped in place, as
one block; when a slot's lane finishes, its state is written back and the next waiting lane's state
and data are copied in: one copy per lane, not one per iteration. No slot idles while lanes wait.
Once the queue is empty, the lanes still in the slots finish under chunked_while (its blocks
shrink with them, so the heavy tail of iteration counts is not run at the full slot width).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse.families.em.compaction import BIG, block_sizes, chunked_while, lane_iterations

MAX_SLOTS = 128


def slot_count(B: int, backend: str = "cpu") -> int:
    """Slots for a batch of B lanes on CPU: a quarter of the lanes, at most MAX_SLOTS; 0 = no queue.

    Fewer slots pay a step's fixed cost more often, more slots leave more lanes to the drain
    (benchmarks/RESULTS.md, "EM lanes in slots"). On an accelerator every lane is one block already
    (compaction.block_sizes)."""
    slots = min(MAX_SLOTS, B // 4)
    return slots if backend == "cpu" and slots >= 8 else 0


def schedule(B: int, backend: str = "cpu", one_off: bool = False):
    """(slots, drain blocks) the batched EM uses for B lanes. one_off (a program that runs once, as a
    study's generation 0, families/base.tracing_one_off): on a CPU, blocks of running lanes alone, no tail
    block (one step program to compile instead of three)."""
    if one_off and backend == "cpu":
        return 0, (min(BIG, B), min(BIG, B), 0)
    slots = slot_count(B, backend)
    return slots, block_sizes(slots or B, backend=backend)


def _row(tree, i):
    return jax.tree_util.tree_map(lambda a: jax.lax.dynamic_index_in_dim(a, i, 0, keepdims=False), tree)


def _put(tree, i, row):
    return jax.tree_util.tree_map(lambda a, r: jax.lax.dynamic_update_index_in_dim(a, r, i, 0), tree, row)


def _first(flags):
    """Index of the first True of a small [S] bool (a min over positions: no two-output reduction)."""
    return jnp.min(jnp.where(flags, jnp.arange(flags.shape[0], dtype=jnp.int32), flags.shape[0]))


def slotted_while(step, running, state, lane_args, slots: int, blocks):
    """chunked_while's contract (see there), with the lanes queued through `slots` slots first
    (slots = 0: chunked_while alone).

    Lanes enter the slots in lane order; a finished slot takes the next waiting lane (the lowest
    finished slot first). Returns (final state, lane-iterations run, idle ones included).
    """
    if not slots:
        return chunked_while(step, running, state, lane_args, blocks)
    tree_map = jax.tree_util.tree_map
    B = jax.tree_util.tree_leaves(state)[0].shape[0]
    S = slots

    def refill(c):
        """Write the lowest finished slot's lane back and load the next waiting lane into it."""
        state, slot_state, slot_args, slot_lane, nxt, done = c
        s = _first(done)
        state = _put(state, slot_lane[s], _row(slot_state, s))
        slot_state = _put(slot_state, s, _row(state, nxt))
        slot_args = _put(slot_args, s, _row(lane_args, nxt))
        loaded = tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, s, 1), slot_state)
        done = done.at[s].set(~running(loaded)[0])
        return state, slot_state, slot_args, slot_lane.at[s].set(nxt), nxt + 1, done

    def refill_all(state, slot_state, slot_args, slot_lane, nxt):
        c = jax.lax.while_loop(lambda c: jnp.any(c[5]) & (c[4] < B), refill,
                               (state, slot_state, slot_args, slot_lane, nxt, ~running(slot_state)))
        return c[:5]

    def trip(c):
        state, slot_state, slot_args, slot_lane, nxt, ran = c
        slot_state = step(slot_state, slot_args)
        return (*refill_all(state, slot_state, slot_args, slot_lane, nxt), ran + S)

    first = tree_map(lambda a: a[:S], (state, lane_args))
    c = (*refill_all(state, *first, jnp.arange(S, dtype=jnp.int32), jnp.int32(S)), jnp.zeros((), jnp.int32))
    # while lanes wait, every slot runs (refill_all leaves no finished slot behind a waiting lane)
    state, slot_state, _, slot_lane, _, ran = jax.lax.while_loop(lambda c: c[4] < B, trip, c)
    state = tree_map(lambda full, part: full.at[slot_lane].set(part), state, slot_state)
    state, drained = chunked_while(step, running, state, lane_args, blocks)
    return state, ran + drained


def slotted_lane_iterations(n_iter, slots: int, blocks) -> int:
    """Lane-iterations slotted_while runs for lanes that need n_iter [B] iterations each (replayed)."""
    need = np.asarray(n_iter).ravel()
    if not slots:
        return lane_iterations(need, blocks)
    B, S = need.size, slots
    left = need[:S].copy()                  # iterations each slot's lane still needs
    nxt, ran = S, 0

    def refill():
        nonlocal nxt
        while nxt < B and (left <= 0).any():
            left[int(np.flatnonzero(left <= 0)[0])] = need[nxt]
            nxt += 1

    refill()
    while nxt < B:
        left -= 1
        ran += S
        refill()
    return ran + lane_iterations(np.maximum(left, 0), blocks)


def lane_efficiency(n_iter, devices: int = 1) -> float:
    """Useful / run lane-iterations of the batched EM loops of n_iter [fits, lanes] on CPU: one loop per
    row and device, each device holding a contiguous share of the lanes (as sharding.py splits chains)."""
    n_iter = np.asarray(n_iter)
    share = -(-n_iter.shape[1] // devices)
    ran = 0
    for start in range(0, n_iter.shape[1], share):
        part = n_iter[:, start:start + share]
        # padded chains are ignored: they are few and finish with the rest. Row 0, generation 0, runs once
        ran += sum(slotted_lane_iterations(row, *schedule(share, one_off=g == 0)) for g, row in enumerate(part))
    return float(n_iter.sum() / ran)
