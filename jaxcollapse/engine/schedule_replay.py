"""Lane-iterations each generation schedule runs, replayed from recorded fit iteration counts.

Lane efficiency = useful lane-iterations (the fits' own iteration counts) / lane-iterations run
(lanes of the blocks stepped, idle ones included). A replay follows the compiled loops' rules
exactly, so it needs no accelerator: the GPU's lane efficiency of either schedule is known from a
CPU run's counts. Counts are [generations, lanes] of one chunk (one device's lanes each).
"""
from __future__ import annotations

import numpy as np

from jaxcollapse.engine.pipeline import COMPACT_SHARE, due, lane_layout


def scanned_accelerator(n_iter) -> int:
    """Generations scanned, every lane one block (an accelerator): each generation runs as many trips as
    its slowest fit needs, every lane stepped each trip."""
    n_iter = np.asarray(n_iter)
    return int(n_iter.max(axis=1).sum() * n_iter.shape[1])


def lane_by_lane(n_iter, layout: str) -> int:
    """engine/pipeline.py's schedule: each lane moves on to its next generation when its group of
    finished lanes is concluded; all lanes stepped in place while many run (always, on an accelerator)."""
    return lane_by_lane_counts(n_iter, layout)["lane_iterations"]


def lane_by_lane_counts(n_iter, layout: str, **override) -> dict:
    """lane_by_lane's lane-iterations, with its trips and concluded groups (an accelerator's time is
    about trips x a step's latency + groups x a group's); `override`: LaneLayout fields to replace."""
    need = np.asarray(n_iter)
    G, B = need.shape
    sizes = lane_layout(B, layout)._replace(**override)
    block, group = sizes.block, sizes.group
    gen = np.zeros(B, np.int64)
    left = need[0].astype(np.int64)
    ran = trips = groups = 0

    def refill():
        nonlocal groups
        while True:
            active = gen < G
            ready = np.flatnonzero(active & (left == 0))
            if not due(ready.size, int(active.sum()), sizes):
                return
            take = ready[:group]
            groups += 1
            gen[take] += 1
            more = take[gen[take] < G]
            left[more] = need[gen[more], more]

    refill()
    while np.any(gen < G):
        run = (gen < G) & (left > 0)
        n_run = int(run.sum())
        if block < B and n_run < int(COMPACT_SHARE * B):
            ran += -(-n_run // block) * block
        else:
            ran += B
        trips += 1
        left[run] -= 1
        refill()
    return {"lane_iterations": ran, "trips": trips, "groups": groups}


def efficiency(n_iter, schedule: str, devices: int = 1) -> float:
    """Useful / run lane-iterations of n_iter [generations, chains] (one chunk) under `schedule`:
    "scan-accelerator", "lanes-accelerator" or "lanes-cpu"; each device holds a contiguous share."""
    n_iter = np.asarray(n_iter)
    share = -(-n_iter.shape[1] // devices)
    ran = 0
    for start in range(0, n_iter.shape[1], share):
        part = n_iter[:, start:start + share]
        if schedule == "scan-accelerator":
            ran += scanned_accelerator(part)
        else:
            ran += lane_by_lane(part, schedule.split("-")[1])
    return float(n_iter.sum() / ran)
