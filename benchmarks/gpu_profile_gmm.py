"""Where a GMM generation's time goes at many chains: sampling, k-means++ initialisation, EM.

python -m benchmarks.gpu_profile_gmm [--n-chains 10000]: times each part alone (vmapped over
chains, compiled, second call), and the EM iteration counts (mean, median, 99th percentile and
max over chains): the compacted EM loop runs until its slowest lane stops.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np


def timed(fn, *args):
    from jaxcollapse._precision import full_float32

    with full_float32():  # as a study runs them: float32 products, not the GPU's default TF32
        jax.block_until_ready(fn(*args))  # compile
        began = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - began


def main(argv=None) -> None:
    import jaxcollapse as jc

    ap = argparse.ArgumentParser()
    ap.add_argument("--n-chains", type=int, default=10_000)
    ap.add_argument("--n-samples", type=int, default=1000)
    args = ap.parse_args(argv)
    c, n = args.n_chains, args.n_samples
    fam = jc.GMM(2, dim=2, covariance="full", tol=1e-5, max_iter=2000)
    src = fam.make_params([1.0], [[0.0, 0.0]], [np.eye(2)])
    keys = jax.random.split(jax.random.key(0), c)
    w = jnp.ones(n)
    sample = jax.jit(jax.vmap(lambda k: fam.sample(k, src, n)))
    init = jax.jit(jax.vmap(lambda k, x: fam.initial_params(k, x, w)))
    fit = jax.jit(jax.vmap(lambda k, x: fam.fit(k, x, w, None)))
    x, t_sample = timed(sample, keys)
    _, t_init = timed(init, keys, x)
    (_, info), t_fit = timed(fit, keys, x)
    it = np.asarray(info.n_iter)
    print(f"device {jax.devices()[0].device_kind}, {c} chains x {n} points (generation-0 data)")
    print(f"sample {t_sample * 1e3:.1f} ms | k-means++ init {t_init * 1e3:.1f} ms | fit (init + EM) {t_fit * 1e3:.1f} ms")
    print(f"EM iterations per chain: mean {it.mean():.1f}, median {np.median(it):.0f}, "
          f"p99 {np.percentile(it, 99):.0f}, max {it.max()}")
    print(f"per lane-iteration (fit time / sum of iterations): {t_fit / it.sum() * 1e9:.1f} ns; "
          f"per iteration of the slowest lane: {t_fit / it.max() * 1e6:.1f} us")


if __name__ == "__main__":
    main()
