"""filter_top's cost: a filtered Gaussian chain against the unfiltered one, per generation, side by side.

The filtered chain (filter_top("source", keep)) draws ceil(n / keep) candidates per generation,
scores them by the source's log-density and keeps the best n; the unfiltered chain draws n.
Same settings otherwise (1-D, ddof=1, M samples, mean and covariance kept per generation,
float32), same process, alternating repeats, best of each; compile time excluded. The NumPy
columns are the same two chains vectorised over chains (argpartition for the filter): what a
careful researcher writes. Wall time and the process's CPU time (all threads; steadier than wall
time on a machine shared with other work) are both reported.

    python benchmarks/quality.py [--chains 10000] [--generations 100] [--samples 100] [--keep 0.5]
"""
from __future__ import annotations

import argparse
import math
import platform
import time

import jax
import numpy as np

import jaxcollapse as jc


def numpy_chain(rng, n_chains, n_generations, n_samples, keep=None):
    """All chains at once; keep=None: unfiltered; else the best n of ceil(n / keep) by |x| (source log-density)."""
    mean, std = np.zeros(n_chains, np.float32), np.ones(n_chains, np.float32)
    n_draw = n_samples if keep is None else math.ceil(n_samples / keep)
    means = np.empty((n_chains, n_generations + 1), np.float32)
    variances = np.empty((n_chains, n_generations + 1), np.float32)
    for g in range(n_generations + 1):
        if g == 0:
            x = rng.standard_normal((n_chains, n_samples), dtype=np.float32)
        else:
            x = mean[:, None] + std[:, None] * rng.standard_normal((n_chains, n_draw), dtype=np.float32)
            if keep is not None:  # the source is N(0, 1): the highest log-density is the smallest |x|
                best = np.argpartition(np.abs(x), n_samples - 1, axis=1)[:, :n_samples]
                x = np.take_along_axis(x, best, axis=1)
        mean, var = x.mean(axis=1), x.var(axis=1, ddof=1)
        std = np.sqrt(var)
        means[:, g], variances[:, g] = mean, var
    return means, variances


@jc.stage
class HalfBySign:
    """The floor of any filter: twice the candidates, weights from a trivial rule, no selection, no compaction."""

    def init(self, real, ctx):
        return ()

    def update(self, key, state, batch, ctx):
        return state, batch._replace(w=batch.w * (batch.x[:, 0] > ctx.params.mean[0]))

    def batch_size(self, n):
        return 2 * n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=10_000)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    fam = jc.Gaussian(dim=1, ddof=1)
    src = fam.make_params(mean=[0.0], cov=[[1.0]])
    run = dict(n_chains=args.chains, n_generations=args.generations, n_samples=args.samples, record=("mean", "cov"))
    plain = lambda: jc.simulate(jax.random.key(0), fam, src, regime=jc.replace(), **run).metrics["cov"]  # noqa: E731
    filtered = lambda: jc.simulate(jax.random.key(0), fam, src,  # noqa: E731
                                   regime=jc.filter_top("source", args.keep), **run).metrics["cov"]
    verifier = lambda: jc.simulate(jax.random.key(0), fam, src,  # noqa: E731
                                   regime=jc.filter_top("generation0", args.keep), **run).metrics["cov"]
    floor = lambda: jc.simulate(jax.random.key(0), fam, src, regime=HalfBySign(),  # noqa: E731
                                **run).metrics["cov"]
    jax_sides = (("plain", plain), ("filtered", filtered), ("gen0 filtered", verifier), ("2x, no select", floor))
    compile_s = {}
    for name, fn in jax_sides:
        began = time.perf_counter()
        fn()
        compile_s[name] = time.perf_counter() - began
    times = {name: np.inf for name, _ in jax_sides} | {"numpy plain": np.inf, "numpy filtered": np.inf}
    cpu = dict(times)
    rng = np.random.default_rng(0)
    for _ in range(args.repeats):  # alternate, so a busy spell on a shared machine hits every side
        for name, fn in (*jax_sides,
                         ("numpy plain", lambda: numpy_chain(rng, args.chains, args.generations, args.samples)),
                         ("numpy filtered", lambda: numpy_chain(rng, args.chains, args.generations, args.samples,
                                                                args.keep))):
            began, began_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name] = min(times[name], time.perf_counter() - began)
            cpu[name] = min(cpu[name], time.process_time() - began_cpu)
    work = args.chains * (args.generations + 1)
    print(f"# {platform.processor() or platform.machine()}, jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"numpy {np.__version__}; {args.chains} chains x {args.generations} generations, M = {args.samples}, "
          f"filter_top('source', {args.keep}) draws {math.ceil(args.samples / args.keep)} candidates; "
          f"best of {args.repeats}")
    per_gen = 1e6 / (args.generations + 1)
    print(f"{'':>16} {'seconds':>9} {'cg/s':>10} {'us/generation':>14} {'cpu us/gen':>11} {'compile+run s':>14}")
    for name, t in times.items():
        extra = f"{compile_s[name]:>14.2f}" if name in compile_s else ""
        print(f"{name:>16} {t:>9.3f} {work / t:>10.3g} {t * per_gen:>14.0f} {cpu[name] * per_gen:>11.0f} {extra}")
    for what, table in (("wall", times), ("cpu", cpu)):
        print(f"{what}: filtered / plain (jaxcollapse): {table['filtered'] / table['plain']:.2f}x per generation "
              f"(goal <= 2.5x); gen0 filtered / plain: {table['gen0 filtered'] / table['plain']:.2f}x; "
              f"2x candidates without selection / plain: {table['2x, no select'] / table['plain']:.2f}x; "
              f"numpy: {table['numpy filtered'] / table['numpy plain']:.2f}x; "
              f"jaxcollapse filtered vs numpy filtered: {table['numpy filtered'] / table['filtered']:.2f}x faster")


if __name__ == "__main__":
    main()
