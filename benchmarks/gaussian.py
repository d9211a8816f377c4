"""Gaussian chains: jaxcollapse.simulate against a NumPy implementation vectorised over chains.

Same settings for both (replace, ddof=1, M samples per generation, float32, mean and covariance
kept for every generation), same machine, one run. Prints chain-generations per second and the
ratio; a per-chain Python loop (what a first script looks like) is timed on fewer chains.

    python benchmarks/gaussian.py [--chains 100 1000 10000] [--generations 100] [--samples 100]
"""
from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

import jaxcollapse as jc


def numpy_vectorised(rng, n_chains, n_generations, n_samples, dim, ddof=1, reg_covar=0.0):
    """All chains at once with NumPy batched linear algebra: what a careful researcher writes."""
    mean = np.zeros((n_chains, dim), np.float32)
    chol = np.broadcast_to(np.eye(dim, dtype=np.float32), (n_chains, dim, dim))
    means = np.empty((n_chains, n_generations + 1, dim), np.float32)
    covs = np.empty((n_chains, n_generations + 1, dim, dim), np.float32)
    for g in range(n_generations + 1):
        z = rng.standard_normal((n_chains, n_samples, dim), dtype=np.float32)
        x = mean[:, None, :] + np.einsum("cnd,ced->cne", z, chol)
        mean = x.mean(axis=1)
        centred = x - mean[:, None, :]
        cov = np.einsum("cnd,cne->cde", centred, centred) / (n_samples - ddof) + reg_covar * np.eye(dim, dtype=np.float32)
        means[:, g], covs[:, g] = mean, cov
        chol = cholesky_or_nan(cov)
    return means, covs


def cholesky_or_nan(cov):
    """Batched Cholesky; a chain whose covariance is no longer positive definite gets NaN (as in JAX)."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        eye = np.eye(cov.shape[-1], dtype=cov.dtype)
        finite = np.all(np.isfinite(cov), axis=(-2, -1))
        ok = finite & np.all(np.linalg.eigvalsh(np.where(finite[:, None, None], cov, eye)) > 0, axis=-1)
        chol = np.linalg.cholesky(np.where(ok[:, None, None], cov, eye))
        chol[~ok] = np.nan
        return chol


def numpy_per_chain(rng, n_chains, n_generations, n_samples, dim, ddof=1):
    """One chain at a time, one generation at a time: the first script a researcher writes."""
    covs = np.empty((n_chains, n_generations + 1, dim, dim))
    for c in range(n_chains):
        mean, cov = np.zeros(dim), np.eye(dim)
        for g in range(n_generations + 1):
            x = rng.multivariate_normal(mean, cov, size=n_samples)
            mean, cov = x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False, ddof=ddof))
            covs[c, g] = cov
    return covs


def time_call(fn, repeats=3):
    best = np.inf
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - began)
    return best, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--reg-covar", type=float, default=1e-6,
                        help="diagonal floor for both (float32 Cholesky fails on chains collapsed past 1e7 condition)")
    parser.add_argument("--loop-chains", type=int, default=20, help="chains for the per-chain Python loop")
    args = parser.parse_args()

    print(f"# {platform.processor() or platform.machine()}, jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"numpy {np.__version__}; M={args.samples}, G={args.generations}, replace, ddof=1, float32, "
          f"reg_covar={args.reg_covar}")
    print(f"{'dim':>4} {'chains':>7} {'jax cg/s':>12} {'numpy-vec cg/s':>15} {'ratio':>7} {'compile s':>10}"
          f" {'E[sigma_G] jax':>15} {'numpy':>7} {'theory':>7}")
    rng = np.random.default_rng(0)
    for dim in args.dims:
        fam = jc.Gaussian(dim=dim, ddof=1, reg_covar=args.reg_covar)
        src = fam.make_params(mean=np.zeros(dim), cov=np.eye(dim))
        for n_chains in args.chains:
            run = lambda: jc.simulate(jax.random.key(0), fam, src, n_chains=n_chains,  # noqa: E731
                                      n_generations=args.generations, n_samples=args.samples,
                                      record=("mean", "cov"))
            began = time.perf_counter()
            run()
            first = time.perf_counter() - began
            t_jax, res = time_call(run)
            t_np, (_, np_covs) = time_call(lambda: numpy_vectorised(rng, n_chains, args.generations,
                                                                    args.samples, dim, 1, args.reg_covar))
            work = n_chains * (args.generations + 1)
            sigma = lambda covs: np.nanmean(np.sqrt(np.asarray(covs)[:, -1, 0, 0]))  # noqa: E731
            theory = jc.theory.gaussian_expected_std(args.generations, args.samples)
            print(f"{dim:>4} {n_chains:>7} {work / t_jax:>12.3g} {work / t_np:>15.3g} {t_np / t_jax:>7.2f}"
                  f" {first - t_jax:>10.2f} {sigma(res.metrics['cov']):>15.4f} {sigma(np_covs):>7.4f} {theory:>7.4f}")
        n_loop = args.loop_chains
        t_loop, _ = time_call(lambda: numpy_per_chain(rng, n_loop, args.generations, args.samples, dim), repeats=1)
        loop_rate = n_loop * (args.generations + 1) / t_loop
        print(f"{dim:>4} per-chain NumPy loop ({n_loop} chains): {loop_rate:.3g} chain-generations/s; "
              f"jax at {args.chains[-1]} chains is {work / t_jax / loop_rate:.0f}x that")


if __name__ == "__main__":
    main()
