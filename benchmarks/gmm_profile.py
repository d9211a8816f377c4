"""Where a GMM generation's time goes, and how well the batched EM loop uses its lanes.

    python benchmarks/gmm_profile.py --n-chains 256            phases and per-iteration cost
    python benchmarks/gmm_profile.py --n-chains 256 --lanes 20 also lane efficiency over 20 generations

The paper's setting (2-D, K = 2, full, 1000 points, tol 1e-5, max_iter 2000), float32, each
phase jitted and vmapped over chains on its own, best of --repeats after a warm-up:
  - sample: 1000 draws per chain from a generation-0 fit;
  - init: k-means++ seeds, 10 Lloyd steps, one M-step;
  - EM: the whole loop to tol (compacted, as in a run);
  - one EM iteration: a fixed number of batched steps (no stopping) at several batch sizes, in
    microseconds per lane-iteration (the floor for 1000 points is near 1.4 us on this CPU; the
    log-likelihood is kept, as in a run).
Lane efficiency = mean EM iterations / lane-iterations the loop ran per lane (idle lanes of a
batch count as run); the loop's schedule is replayed exactly from the iteration counts.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse.families.em.densities import MixtureParams
from jaxcollapse.families.em.mstep import fallback
from jaxcollapse.families.em.slots import lane_efficiency as schedule_efficiency
from jaxcollapse.families.em.step import batched_em_step

TOL, MAX_ITER, N_SAMPLES = 1e-5, 2000, 1000


def best_of(fn, repeats):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - began)
    return min(times)


def generation0(n_chains, seed=0):
    """Per chain: source data, its k-means start and fitted mixture (the paper's generation 0)."""
    import jaxcollapse as jc

    fam = jc.GMM(2, dim=2, tol=TOL, max_iter=MAX_ITER)
    keys = jax.random.split(jax.random.key(seed), n_chains)
    x = jax.random.normal(jax.random.key(seed + 1), (n_chains, N_SAMPLES, 2))
    w = jnp.ones((n_chains, N_SAMPLES))
    start = jax.jit(jax.vmap(fam.initial_params))(keys, x, w)
    params, info = jax.jit(jax.vmap(fam.fit))(keys, x, w)
    return fam, keys, x, w, start, params, info


def phases(n_chains, repeats):
    fam, keys, x, w, start, params, info = generation0(n_chains)
    sample = jax.jit(jax.vmap(lambda k, p: fam.sample(k, p, N_SAMPLES)))
    init = jax.jit(jax.vmap(fam.initial_params))
    prev = type(fam)(2, dim=2, tol=TOL, max_iter=MAX_ITER, init="previous")
    em = jax.jit(jax.vmap(prev.fit))
    out = {
        "sample": best_of(lambda: sample(keys, params), repeats),
        "init": best_of(lambda: init(keys, x, w), repeats),
        "EM to tol": best_of(lambda: em(keys, x, w, start), repeats),
    }
    n_iter = np.asarray(info.n_iter)
    print(f"{n_chains} chains, generation-0 data: EM iterations mean {n_iter.mean():.1f}, max {n_iter.max()}")
    for name, seconds in out.items():
        print(f"  {name:10s} {seconds / n_chains * 1e6:8.1f} us per chain")
    per_iter = out["EM to tol"] / n_iter.sum() * 1e6
    print(f"  EM to tol: {per_iter:.2f} us per useful lane-iteration; lane efficiency of its schedule "
          f"{schedule_efficiency(n_iter[None]):.1%}")
    return x, w, start


def iteration_cost(x, w, start, batch_sizes, n_steps, repeats):
    """Microseconds per lane-iteration of one batched EM step (E-step and M-step, no stopping)."""
    reg = jnp.full(x.shape[:1], 1e-6, x.dtype)
    xt = jnp.swapaxes(x, -1, -2)
    fb = jax.vmap(lambda a, b: fallback(a, b, 2, "full", 1e-6))(xt, w)

    @jax.jit
    def steps(theta, xt, w, fb, reg):
        def body(_, carry):  # the log-likelihood is carried, so it is computed as in a run
            ll, new = batched_em_step(carry[0], xt, w, fb, "full", reg)
            return new, carry[1] + ll
        return jax.lax.fori_loop(0, n_steps, body, (theta, jnp.zeros(reg.shape, reg.dtype)))

    for size in batch_sizes:
        args = jax.tree_util.tree_map(lambda a: a[:size], (MixtureParams(*start), xt, w, fb, reg))
        seconds = best_of(lambda: steps(*args), repeats)
        print(f"  one EM iteration at {size:5d} lanes: {seconds / (size * n_steps) * 1e6:6.2f} us per lane-iteration")


def run_lane_efficiency(n_chains, n_generations):
    import jaxcollapse as jc

    fam = jc.GMM(2, dim=2, tol=TOL, max_iter=MAX_ITER)
    src = fam.make_params(weights=[1.0], means=[[0.0, 0.0]], covs=[np.eye(2)])
    res = jc.simulate(jax.random.key(0), fam, src, n_chains=n_chains, n_generations=n_generations,
                      n_samples=N_SAMPLES, record=("component_std",))
    n_iter = np.asarray(res.info.n_iter).T  # [generation, chain]: one batched fit per generation
    print(f"{n_chains} chains x {n_generations + 1} generations: EM iterations mean {n_iter.mean():.1f}, "
          f"max {n_iter.max()}; lane efficiency {schedule_efficiency(n_iter):.1%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-chains", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-steps", type=int, default=20)
    parser.add_argument("--lanes", type=int, default=0, metavar="G",
                        help="also run G generations and report the lane efficiency of the whole run")
    cfg = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    x, w, start = phases(cfg.n_chains, cfg.repeats)
    sizes = sorted({s for s in (1, 16, 64, cfg.n_chains) if s <= cfg.n_chains})
    iteration_cost(x, w, start, sizes, cfg.n_steps, cfg.repeats)
    if cfg.lanes:
        run_lane_efficiency(cfg.n_chains, cfg.lanes)


if __name__ == "__main__":
    main()
