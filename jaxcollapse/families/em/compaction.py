"""Run a batched while loop whose lanes finish at different times, stepping only running lanes.

Each lane runs exactly its own one-lane recurrence; a finished lane is never stepped again (or is
frozen by the step when it shares a block with running lanes). EM iteration counts are heavy-
tailed, so a batch stepped as a whole would spend most of its work on finished lanes.

Every trip, the running lanes are listed first (an O(B) permutation of lane indices) and stepped in
blocks gathered by index: as many full blocks of `big` lanes as they fill, the rest in blocks of
`small` lanes. Once at most `last` lanes run (the heavy tail: the slowest lanes run hundreds of
iterations after the rest), they are gathered once and stepped as one block until all finish,
without a trip's listing, gather and scatter per iteration. Idle work is under `small` lanes per
iteration, and at most three step programs are compiled (big blocks, small blocks unless they are
the big ones' size, the tail), whatever the batch size (lane efficiency: benchmarks/RESULTS.md, GMM).
On CPU the batched EM first queues its lanes through a block of slots (slots.py) and drains the rest here.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# lanes per block: each size is one more step program to compile; small blocks and a 1-lane tail leave few lanes
# idle at a generation's end (benchmarks/RESULTS.md, "Drain blocks of 4 and a 1-lane tail")
BIG, SMALL, LAST = 16, 4, 1


def block_sizes(B: int, big: int = BIG, small: int = SMALL, last: int = LAST,
                backend: str = "cpu") -> tuple[int, int, int]:
    """(big, small, last) lane blocks for a batch of B lanes (chunked_while).

    On a CPU a block's cost grows with its lanes, so only running lanes are stepped. On an
    accelerator a step's cost is mostly its latency, which the slowest lane pays once per
    iteration anyway: one block of every lane (the tail loop), finished lanes frozen, so an
    iteration is one step instead of one per block (benchmarks/RESULTS.md, GPU).
    """
    if backend != "cpu":
        return B, B, B
    big = min(big, B)
    small = min(small, big)
    return big, small, min(last, small)


def chunked_while(step, running, state, lane_args, blocks):
    """Iterate `state = step(state, args)` on the running lanes, in blocks, until no lane is running.

    step(state, args): one iteration of a block of lanes (leading lane axis on every leaf of both);
        it must leave a lane that is not running unchanged.
    running(state): [lanes] bool.
    state, lane_args: pytrees with a leading lane axis (the args do not change).
    blocks: (big, small[, last]) lane counts of the blocks: big ones while they fill, the rest in small
        ones, and the last <= `last` running lanes (default small) in one block until they finish
        (last = 0: no tail block, one step program fewer to compile).
    Returns (final state, lane-iterations run: lanes of the blocks stepped, idle ones included).
    """
    big, small, last = _sizes(blocks)
    B = jax.tree_util.tree_leaves(state)[0].shape[0]
    tree_map = jax.tree_util.tree_map

    def running_first(order, run):
        r = run[order]
        n_run = jnp.sum(r, dtype=jnp.int32)
        pos = jnp.where(r, jnp.cumsum(r) - 1, n_run + jnp.cumsum(~r) - 1)
        return jnp.zeros_like(order).at[pos].set(order, unique_indices=True), n_run

    def stepped(size, listed, offset, state):
        """Step the `size` lanes listed at listed[offset:offset + size]."""
        idx = jax.lax.dynamic_slice_in_dim(listed, offset, size)
        take = lambda a: a[idx]  # noqa: E731
        # gathered into contiguous blocks: fused into every consumer, a gather is scalar loads
        new = step(*jax.lax.optimization_barrier((tree_map(take, state), tree_map(take, lane_args))))
        # a lane listed twice (the padding) is stepped twice from the same state: the same values
        return tree_map(lambda full, part: full.at[idx].set(part), state, new)

    def trip(carry):
        state, order, n_run, lane_iterations = carry
        # the last listed lane repeats, so a block never reaches past the list; it shares its block
        listed = jnp.concatenate([order, jnp.broadcast_to(order[-1:], (big,))])
        n_big = n_run // big
        n_small = (n_run - n_big * big + small - 1) // small
        if small == big:  # the small blocks are big ones: one step program fewer to compile
            state = jax.lax.fori_loop(0, n_big + n_small, lambda i, st: stepped(big, listed, i * big, st), state)
        else:
            state = jax.lax.fori_loop(0, n_big, lambda i, st: stepped(big, listed, i * big, st), state)
            state = jax.lax.fori_loop(0, n_small, lambda i, st: stepped(small, listed, n_big * big + i * small, st),
                                      state)
        order, n_run = running_first(order, running(state))
        return state, order, n_run, lane_iterations + n_big * big + n_small * small

    def tail(state, order, lane_iterations):
        """The last <= `last` running lanes: one block, gathered once, stepped until all finish.

        A trip's listing, gather and scatter cost several block steps of a few lanes, and the
        slowest lanes of a batch run hundreds of iterations after the rest (heavy-tailed counts)."""
        idx = order[:last]
        take = lambda a: a[idx]  # noqa: E731
        block, args = jax.lax.optimization_barrier((tree_map(take, state), tree_map(take, lane_args)))
        block, trips = jax.lax.while_loop(lambda c: jnp.any(running(c[0])), lambda c: (step(c[0], args), c[1] + 1),
                                          (block, jnp.zeros((), jnp.int32)))
        return tree_map(lambda full, part: full.at[idx].set(part), state, block), lane_iterations + trips * last

    order, n_run = running_first(jnp.arange(B, dtype=jnp.int32), running(state))
    state, order, _, lane_iterations = jax.lax.while_loop(lambda c: c[2] > last, trip,
                                                          (state, order, n_run, jnp.zeros((), jnp.int32)))
    return tail(state, order, lane_iterations) if last else (state, lane_iterations)


def lane_iterations(n_iter, blocks) -> int:
    """Lane-iterations chunked_while runs for lanes that need n_iter [B] iterations each (replayed)."""
    big, small, last = _sizes(blocks)
    need = np.asarray(n_iter).ravel()
    still = need.size - np.cumsum(np.bincount(need))[:-1]                      # running at trip t = 0 .. max - 1
    blocked = np.flatnonzero(still > last)                                      # trips stepped in blocks
    n_big = still[blocked] // big
    n_small = -(-(still[blocked] - n_big * big) // small)
    tail_trips = need.max() - (blocked[-1] + 1 if blocked.size else 0)         # one block of `last` lanes
    return int(np.sum(n_big * big + n_small * small) + tail_trips * last)       # last = 0: no tail


def _sizes(blocks):
    """(big, small, last): blocks may leave out `last` (the tail block), which is then `small`."""
    big, small, *rest = blocks
    return big, small, (rest[0] if rest else small)

