"""One batched EM iteration of the paper's GMM on this device, for each way of summing over the points.

    python -m benchmarks.gpu_em_step [--n-chains 10000] [--iterations 50] [--json OUT.json]

Per mode (the sums setting, settings.py: "product" / "reduce"; products in full float32, and "product" also at this
platform's default precision, TF32 on recent NVIDIA GPUs): microseconds per iteration of all lanes
stepped in place (as engine/pipeline.py's accelerator layout does), the median of 3 calls of a
compiled loop of --iterations iterations; and agreement with the host's CPU: 5 iterations from the
same fit states (begun on the CPU, copied here), per chain ||here - cpu|| / ||cpu|| of the means and
the covariances, max over chains. Float32 rounding gives ~1e-6; TF32 products ~1e-3.
Generation-0 data: 1,000 points of N(0, I_2) per chain.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

N_SAMPLES, AGREEMENT_CHAINS, AGREEMENT_STEPS = 1000, 64, 5


def fit_states(begin, n_chains, device):
    """(states, datas) of n_chains fits begun (begin: the family's fit_begin, vmapped) on `device` from
    generation-0 data."""
    with jax.default_device(device):
        key = jax.random.key(0)
        x = jax.random.normal(key, (n_chains, N_SAMPLES, 2), jnp.float32)
        w = jnp.ones((n_chains, N_SAMPLES), jnp.float32)
        keys = jax.random.split(jax.random.key(1), n_chains)
        return begin(keys, x, w)


def iterate(family, n):
    return jax.jit(lambda states, datas: jax.lax.fori_loop(0, n, lambda i, s: family.fit_iterate(s, datas), states))


def relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return float(np.max(np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)))


MODES = (("product", "float32"), ("product", "default"), ("reduce", "float32"))


def measure(n_chains: int, iterations: int, log=print) -> list[dict]:
    """One row per mode (see the module's docstring)."""
    import jaxcollapse as jc
    from jaxcollapse import settings

    family = jc.GMM(2, dim=2, covariance="full", tol=1e-30, max_iter=2000)  # no lane stops within the loop
    device, cpu = jax.devices()[0], jax.devices("cpu")[0]
    begin = jax.jit(jax.vmap(family.fit_begin))  # one program where both shapes and devices are the same
    states, datas = fit_states(begin, n_chains, device)
    cpu_states, cpu_datas = fit_states(begin, AGREEMENT_CHAINS, cpu)
    rows = []
    with settings.using(sums="product"), jax.default_device(cpu):  # the CPU's own choice
        reference = iterate(family, AGREEMENT_STEPS)(cpu_states, cpu_datas)
    for sums, precision in MODES:
        with settings.using(sums=sums), jax.default_matmul_precision(precision):
            loop = iterate(family, iterations)
            jax.block_until_ready(loop(states, datas))  # compile
            seconds = []
            for _ in range(3):
                began = time.perf_counter()
                jax.block_until_ready(loop(states, datas))
                seconds.append(time.perf_counter() - began)
            agree = loop if iterations == AGREEMENT_STEPS else iterate(family, AGREEMENT_STEPS)
            here = agree(*jax.device_put((cpu_states, cpu_datas), device))
        per_iteration = statistics.median(seconds) / iterations
        row = dict(config=f"{sums}/{precision}", sums=sums, precision=precision, n_chains=n_chains,
                   iterations=iterations, us_per_iteration=1e6 * per_iteration,
                   ns_per_lane_iteration=1e9 * per_iteration / n_chains,
                   agreement_means=relative(here.theta.means, reference.theta.means),
                   agreement_covs=relative(here.theta.covs, reference.theta.covs))
        rows.append(row)
        log(f"sums={sums:<8} precision={precision:<8} {row['us_per_iteration']:9.1f} us per iteration "
            f"({row['ns_per_lane_iteration']:.1f} ns per lane-iteration); against the CPU after "
            f"{AGREEMENT_STEPS} iterations: means {row['agreement_means']:.1e}, covs {row['agreement_covs']:.1e}")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-chains", type=int, default=10_000)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = measure(args.n_chains, args.iterations, log=lambda text: print(text, flush=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": jax.devices()[0].device_kind, "n_samples": N_SAMPLES, "modes": rows}, f, indent=1)


if __name__ == "__main__":
    main()
