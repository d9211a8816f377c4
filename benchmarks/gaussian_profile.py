"""Where a Gaussian generation's time goes: XLA:CPU's own per-operation times, one line per fused op.

    python benchmarks/gaussian_profile.py --dims 10 [--chains 10000] [--generations 10] [--top 15]

Runs benchmarks/gaussian.py's chain (100 samples, replace, ddof=1, reg_covar 1e-6) through the
compiled program, once to compile, once under jax.profiler, and sums each XLA operation's time
(milliseconds per generation, summed over threads; a while loop or conditional includes what it
runs). Run it under both jax versions to see which operation carries a difference; the names are
those of `jax.jit(...).lower(...).compile().as_text()`. Also prints the wall and CPU seconds of
the traced run, and how many while loops XLA:CPU hoisted into one sequential call
(`xla_cpu_small_call`, jax 0.12).
"""
from __future__ import annotations

import argparse
import collections
import glob
import tempfile
import time

import jax
import numpy as np

import jaxcollapse as jc
from jaxcollapse._precision import full_float32
from jaxcollapse.engine import program as program_lib


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=10)
    parser.add_argument("--chains", type=int, default=10_000)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    fam = jc.Gaussian(dim=args.dims, ddof=1, reg_covar=1e-6)
    src = fam.make_params(np.zeros(args.dims), np.eye(args.dims))
    prog = program_lib.ChainProgram(fam, src, n_chains=args.chains, n_generations=args.generations,
                                     n_samples=100, record=("mean", "cov"))
    key = jax.random.key(0)
    state, _ = prog.start(key)
    with full_float32():  # as advance() compiles it
        compiled = program_lib._advance_jit.lower(
            state.carry, np.int32(1), np.int32(args.generations), prog.family, prog.regime, prog.source,
            prog.spec, args.generations, mesh=None, lanes=prog.schedule).compile().as_text()
    jax.block_until_ready(prog.advance(state, args.generations)[1])   # compile and warm up

    state, _ = prog.start(key)
    jax.block_until_ready(state.carry)
    with tempfile.TemporaryDirectory() as folder:
        jax.profiler.start_trace(folder)
        began, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(prog.advance(state, args.generations)[1])
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        jax.profiler.stop_trace()
        profile = jax.profiler.ProfileData.from_file(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0])

    names = {line.split(" = ")[0].strip().lstrip("%") for line in compiled.splitlines() if " = " in line}
    total, count = collections.Counter(), collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in names:
                    total[event.name] += event.duration_ns
                    count[event.name] += 1
    print(f"# jax {jax.__version__}, dim {args.dims}, {args.chains} chains, {args.generations} generations: "
          f"{wall / args.generations * 1e3:.1f} ms wall and {cpu / args.generations * 1e3:.1f} ms CPU per generation "
          f"(traced); {compiled.count('xla_cpu_small_call')} while loops hoisted into sequential calls")
    for name, ns in total.most_common(args.top):
        print(f"{name:<45} {ns / args.generations / 1e6:9.2f} ms/gen  x{count[name]}")


if __name__ == "__main__":
    main()
