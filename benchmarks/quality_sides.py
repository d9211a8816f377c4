"""filter_top's cost side by side with an older selection, in one process: only jaxcollapse sides.

Sides: the unfiltered chain (replace()), the floor (200 candidates, trivial weights, no selection;
also with the points stored, as filter_top has them), filter_top("source", keep) as it is now, and
with --old REV the selection (_kept) of commit REV run as a stage of its own (no stored points).
Each run goes through jc.simulate and ends at the result's numbers; repeats alternate; best of
each, wall and CPU time (the process's, all threads); compile excluded.

    python benchmarks/quality_sides.py [--old aa54d04] [--repeats 7] [--chains 10000] [--generations 100]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types as pytypes

import jax
import jax.numpy as jnp
import numpy as np

import jaxcollapse as jc
from jaxcollapse.stages import quality

sys.path.insert(0, os.path.dirname(__file__))
from quality import HalfBySign  # noqa: E402  (benchmarks/quality.py)


@jc.stage
class StoredFloor(HalfBySign):
    """The floor with its points stored once, as filter_top has them."""

    stores_batch = True


def old_filter(rev: str, keep: float):
    """filter_top with commit rev's _kept (the module's text from git, run as a module of its own)."""
    text = subprocess.run(["git", "show", f"{rev}:jaxcollapse/stages/quality.py"], check=True, capture_output=True,
                          text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout
    module = pytypes.ModuleType(f"quality_{rev}")
    sys.modules[module.__name__] = module
    exec(compile(text, f"{rev}:quality.py", "exec"), module.__dict__)   # noqa: S102  (our own repository's code)

    @jc.stage(static=("score", "min_keep"))
    class OldFilterTop(quality.FilterTop):
        stores_batch = False

        def update_to_fit(self, key, state, batch, ctx):
            s, valid, n = self._scored(state, batch, ctx)
            return state, batch._replace(w=jnp.where(module._kept(s, valid, n), batch.w, 0.0))

    now = jc.filter_top("source", keep)
    return OldFilterTop(now.keep, now.score, now.min_keep)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=None, help="a commit whose selection runs beside today's")
    parser.add_argument("--chains", type=int, default=10_000)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    fam = jc.Gaussian(dim=1, ddof=1)
    src = fam.make_params(mean=[0.0], cov=[[1.0]])
    run = dict(n_chains=args.chains, n_generations=args.generations, n_samples=args.samples, record=("mean", "cov"))
    sides = {"plain": jc.replace(), "floor": HalfBySign(), "floor, stored": StoredFloor(),
             "filtered": jc.filter_top("source", args.keep)}
    if args.old:
        sides[f"filtered, {args.old}"] = old_filter(args.old, args.keep)
    results = {}
    for name, regime in sides.items():   # compile, and keep the numbers to compare
        results[name] = np.asarray(jc.simulate(jax.random.key(0), fam, src, regime=regime, **run).metrics["cov"])
    wall = {name: np.inf for name in sides}
    cpu = dict(wall)
    for _ in range(args.repeats):
        for name, regime in sides.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(jc.simulate(jax.random.key(0), fam, src, regime=regime, **run).metrics["cov"])
            wall[name] = min(wall[name], time.perf_counter() - began)
            cpu[name] = min(cpu[name], time.process_time() - began_cpu)
    per_gen = 1e3 / (args.generations + 1)
    print(f"# jax {jax.__version__}, {args.chains} chains x {args.generations} generations, M = {args.samples}, "
          f"keep {args.keep}; best of {args.repeats}; load average {os.getloadavg()}")
    print(f"{'':>20} {'wall ms/gen':>12} {'cpu ms/gen':>11} {'x plain (wall / cpu)':>22}")
    for name in sides:
        print(f"{name:>20} {wall[name] * per_gen:>12.2f} {cpu[name] * per_gen:>11.2f} "
              f"{wall[name] / wall['plain']:>13.2f} / {cpu[name] / cpu['plain']:.2f}")
    if args.old:
        same = np.array_equal(results["filtered"], results[f"filtered, {args.old}"], equal_nan=True)
        print(f"same numbers as {args.old}'s selection: {same} (storing the points can change last bits)")


if __name__ == "__main__":
    main()
