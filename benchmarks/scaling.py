"""Scaling of the chain engine: chain-generations per second against n_chains and against devices.

    python benchmarks/scaling.py                     everything (one device sweep, then fake-device sweep)
    python benchmarks/scaling.py --part chains       n_chains sweep on one device (Gaussian, GMM)
    python benchmarks/scaling.py --part devices      device-count sweep (fake CPU devices, or the real ones)
    python benchmarks/scaling.py --json out.json     also write the figures as JSON

n_chains runs from 1 upwards, log-spaced (x4), until a timed run takes longer than --budget seconds
or the compiled program would need more than half the device's memory; the memory limit in chains
is then extrapolated from the compiled program's bytes per chain (XLA's memory_analysis: arguments +
outputs + temporaries - donated aliases, divided by n_chains at the largest run).

Timings exclude compilation (each shape runs once to compile, then once timed) and include copying
the records back to the host, as simulate() does.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

FAMILIES = {
    # name: (n_samples, n_generations)
    "gaussian": (100, 20),
    "gmm": (100, 5),
}


def _study(name):
    import numpy as np

    import jaxcollapse as jc

    if name == "gaussian":
        family = jc.Gaussian(dim=2, ddof=1)
        return family, family.make_params(mean=[0.0, 0.0], cov=np.eye(2))
    family = jc.GMM(2, dim=2)
    return family, family.make_params(weights=[0.5, 0.5], means=[[-2.0, 0.0], [2.0, 0.0]], covs=[np.eye(2)] * 2)


def _compiled_bytes(program, state, n_steps):
    """Peak bytes XLA reports for the compiled advance() program (None where the backend does not say)."""
    import numpy as np

    from jaxcollapse._precision import full_float32
    from jaxcollapse.engine import program as chain

    with full_float32():  # the program advance() runs: its products in float32, its EM schedule
        lowered = chain._advance_jit.lower(
            state.carry, *program.layout.replicate((np.int32(1), np.int32(n_steps))), program.family, program.regime,
            program.source, program.spec, n_steps, mesh=program.layout.mesh, lanes=program.schedule)
        analysis = lowered.compile().memory_analysis()
    if analysis is None:
        return None
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
               - analysis.alias_size_in_bytes)


def time_run(name, n_chains, devices=None, memory=True):
    """(seconds of one compiled run, compiled bytes or None) for n_chains chains of family `name`."""
    import jax

    from jaxcollapse.engine import ChainProgram

    family, source = _study(name)
    n_samples, n_generations = FAMILIES[name]
    program = ChainProgram(family, source, n_chains=n_chains, n_generations=n_generations, n_samples=n_samples,
                           devices=devices)

    def once(seed):
        state, first = program.start(jax.random.key(seed))
        state, records = program.advance(state, n_generations)
        jax.block_until_ready(state.carry)
        return state

    once(0)  # compile
    seconds = float("inf")
    for repeat in range(3):  # the best of up to 3 runs; one when a run takes over a second
        began = time.perf_counter()
        state = once(1 + repeat)
        seconds = min(seconds, time.perf_counter() - began)
        if seconds > 1.0:
            break
    return seconds, (_compiled_bytes(program, state, n_generations) if memory else None)


def _memory_budget():
    from jaxcollapse.engine.program import _memory_budget

    return _memory_budget()


def sweep_chains(name, budget_seconds, max_chains):
    n_generations = FAMILIES[name][1]
    limit = _memory_budget()
    rows, n_chains = [], 1
    while n_chains <= max_chains:
        seconds, nbytes = time_run(name, n_chains, devices=1)
        rows.append({"family": name, "n_chains": n_chains, "seconds": seconds,
                     "chain_generations_per_second": n_chains * n_generations / seconds,
                     "compiled_bytes": nbytes, "bytes_per_chain": None if nbytes is None else nbytes / n_chains})
        print(f"{name:8s} n_chains={n_chains:>8d}  {seconds:8.3f} s  "
              f"{rows[-1]['chain_generations_per_second']:12.0f} chain-gen/s  "
              f"{'' if nbytes is None else f'{nbytes / n_chains:10.0f} B/chain'}", flush=True)
        if seconds > budget_seconds or (nbytes is not None and nbytes * 4 > limit) or n_chains >= max_chains:
            break
        n_chains = min(n_chains * 4, max_chains)
    per_chain = rows[-1]["bytes_per_chain"]
    memory_limit = None if not per_chain else int(limit / per_chain)
    return {"family": name, "n_samples": FAMILIES[name][0], "n_generations": n_generations, "rows": rows,
            "memory_budget_bytes": limit, "memory_limit_chains": memory_limit}


def sweep_devices(name, n_chains, device_counts, fake):
    """Throughput for each device count; with fake=True each count runs in its own subprocess."""
    rows = []
    for count in device_counts:
        if fake:
            env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
            done = subprocess.run([sys.executable, __file__, "--one", name, str(n_chains), str(count)],
                                  capture_output=True, text=True, timeout=1800, env=env)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        else:
            seconds, _ = time_run(name, n_chains, devices=count, memory=False)
        n_generations = FAMILIES[name][1]
        rows.append({"family": name, "devices": count, "n_chains": n_chains, "seconds": seconds,
                     "chain_generations_per_second": n_chains * n_generations / seconds})
        print(f"{name:8s} devices={count}  n_chains={n_chains}  {seconds:8.3f} s  "
              f"{rows[-1]['chain_generations_per_second']:12.0f} chain-gen/s", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "chains", "devices"), default="all")
    parser.add_argument("--families", default="gaussian,gmm")
    parser.add_argument("--budget", type=float, default=20.0, help="stop a family's sweep after a run this long (s)")
    # 32768: on the 2-core CPU of 2026-11-25 (jax 0.10.2) the Gaussian advance() with 65536 chains
    # deadlocks inside XLA:CPU (no thread runs; also with the engine before sharding), see RESULTS.md
    parser.add_argument("--max-chains", type=int, default=32768)
    parser.add_argument("--device-chains", type=int, default=16384, help="n_chains of the device-count sweep")
    parser.add_argument("--device-counts", default="1,2,4,8")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--one", nargs=3, metavar=("FAMILY", "N_CHAINS", "DEVICES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        seconds, _ = time_run(args.one[0], int(args.one[1]), devices=int(args.one[2]), memory=False)
        print(json.dumps({"seconds": seconds}))
        return

    import jax

    out = {"machine": f"{os.cpu_count()} CPU cores, backend {jax.default_backend()}, "
                      f"devices {[str(d) for d in jax.devices()]}",
           "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"),
           "load_average_before": os.getloadavg()}  # other work on the machine skews the timings
    families = args.families.split(",")
    if args.part in ("all", "chains"):
        out["chains"] = [sweep_chains(name, args.budget, args.max_chains) for name in families]
    if args.part in ("all", "devices"):
        counts = [int(c) for c in args.device_counts.split(",")]
        fake = jax.default_backend() == "cpu"
        out["devices"] = {"fake_cpu_devices": fake,
                          "rows": [r for name in families for r in sweep_devices(name, args.device_chains if
                                   name == "gaussian" else args.device_chains // 16, counts, fake)]}
    out["load_average_after"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
