"""Linear-regression chains: jaxcollapse.simulate against NumPy vectorised over chains.

Same chains on both sides (OLS, float32, T rows per generation, labels with noise 1, the excess
risk ||w_g - w*||^2 kept for every generation): fixed design replace and accumulate (Gerstgrasser
et al.) and random design replace (Dohmatob et al.). Two NumPy baselines:
  - "same algorithm": each generation forms X^T X and X^T y of its training set and solves, as the
    engine does (batched matmul + np.linalg.solve);
  - "projection" (fixed design only): what a careful researcher writes when the design never
    changes: P = (X^T X)^-1 X^T once per chain, then w = P y per generation (O(T d) instead of
    O(T d^2); accumulate keeps the running mean of P y_k, the pooled OLS on a repeated design).
A third column, not a baseline: the same chains as a hand-written JAX vmap of lax.scan (no engine).
Best of 3 after a warm-up; compile time listed separately. Prints chain-generations per second
and each one's time over jaxcollapse's (> 1: jaxcollapse faster), and E R_G against theory.

    python benchmarks/regression.py [--chains 1000 10000] [--generations 100] [--samples 100] [--dim 10]
"""
from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxcollapse as jc


def numpy_same_algorithm(rng, n_chains, n_generations, n_samples, dim, design, accumulate):
    """All chains at once; each generation's fit from its training set's X^T X and X^T y.

    Batched matmul, not np.einsum: einsum("ctd,cte->cde") runs its own unblocked loop (206 ms against
    11 ms for 10,000 x 100 x 10 here), matmul dispatches each chain's product to BLAS.
    """
    f32 = np.float32
    w_true = np.full(dim, 1 / np.sqrt(dim), f32)
    x = rng.standard_normal((n_chains, n_samples, dim), dtype=f32)
    w = np.broadcast_to(w_true, (n_chains, dim))[..., None]                      # [C, d, 1]
    xtx = np.zeros((n_chains, dim, dim), f32)
    xty = np.zeros((n_chains, dim, 1), f32)
    risk = np.empty((n_chains, n_generations + 1), f32)
    for g in range(n_generations + 1):
        if design == "random" and g > 0:
            x = rng.standard_normal((n_chains, n_samples, dim), dtype=f32)
        xt = np.swapaxes(x, 1, 2)
        y = x @ w + rng.standard_normal((n_chains, n_samples, 1), dtype=f32)
        gram, cross = xt @ x, xt @ y
        if accumulate:
            xtx, xty = xtx + gram, xty + cross
        else:
            xtx, xty = gram, cross
        w = np.linalg.solve(xtx, xty)
        risk[:, g] = np.sum((w[..., 0] - w_true) ** 2, axis=1)
    return risk


def numpy_projection(rng, n_chains, n_generations, n_samples, dim, accumulate):
    """Fixed design with P = (X^T X)^-1 X^T precomputed per chain; accumulate: the running mean of P y_k."""
    f32 = np.float32
    w_true = np.full(dim, 1 / np.sqrt(dim), f32)
    x = rng.standard_normal((n_chains, n_samples, dim), dtype=f32)
    xt = np.swapaxes(x, 1, 2)
    proj = np.linalg.solve(xt @ x, xt)                                            # [C, d, T]
    w = np.broadcast_to(w_true, (n_chains, dim))[..., None]                      # [C, d, 1]
    total = np.zeros((n_chains, dim, 1), f32)
    risk = np.empty((n_chains, n_generations + 1), f32)
    for g in range(n_generations + 1):
        y = x @ w + rng.standard_normal((n_chains, n_samples, 1), dtype=f32)
        fitted = proj @ y
        if accumulate:
            total += fitted
            w = total / (g + 1)
        else:
            w = fitted
        risk[:, g] = np.sum((w[..., 0] - w_true) ** 2, axis=1)
    return risk


def jax_hand_scan(n_chains, n_generations, n_samples, dim, design, accumulate):
    """The same chains as a hand-written JAX program (vmap of a lax.scan, no engine): what the engine's
    generality (stages, weights, pytree points, Context, metrics) costs over the bare algorithm."""
    w_true = jnp.full(dim, 1 / np.sqrt(dim))

    def chain(key):
        def step(carry, g):
            w, xtx, xty = carry
            k_x, k_noise = jax.random.split(jax.random.fold_in(key, g))
            x = design_x if design == "fixed" else jax.random.normal(k_x, (n_samples, dim))
            y = x @ w + jax.random.normal(k_noise, (n_samples,))
            gram, cross = x.T @ x, x.T @ y
            xtx, xty = (xtx + gram, xty + cross) if accumulate else (gram, cross)
            w = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(xtx), True), xty)
            return (w, xtx, xty), jnp.sum((w - w_true) ** 2)

        design_x = jax.random.normal(jax.random.fold_in(key, 0xFFFFFFFF), (n_samples, dim))
        zeros = (jnp.zeros((dim, dim)), jnp.zeros(dim))
        return jax.lax.scan(step, (w_true, *zeros), jnp.arange(n_generations + 1))[1]

    run = jax.jit(jax.vmap(chain))
    keys = jax.random.split(jax.random.key(1), n_chains)
    return lambda: np.asarray(run(keys))


def time_call(fn, repeats=3):
    best = np.inf
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - began)
    return best, out


SETTINGS = [("fixed", "replace"), ("fixed", "accumulate"), ("random", "replace")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--dim", type=int, default=10)
    args = parser.parse_args()
    t, d, n_gen = args.samples, args.dim, args.generations

    print(f"# {platform.processor() or platform.machine()}, jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"numpy {np.__version__}; d={d}, T={t}, G={n_gen}, OLS, float32")
    print(f"{'design':>6} {'regime':>10} {'chains':>7} {'jax cg/s':>10} {'np-same cg/s':>13} {'ratio':>6}"
          f" {'np-proj cg/s':>13} {'ratio':>6} {'hand-jax cg/s':>13} {'ratio':>6} {'compile s':>9}"
          f" {'E R_G jax':>10} {'np':>8} {'hand':>8} {'theory':>8}")
    rng = np.random.default_rng(0)
    for design, regime in SETTINGS:
        fam = jc.LinearRegression(dim=d, noise_std=1.0, design=design)
        src = fam.make_params(w=np.full(d, 1 / np.sqrt(d)))
        stage = jc.accumulate() if regime == "accumulate" else jc.replace()
        theory = (jc.theory.ols_accumulate_expected_error(n_gen, t, d, design=design) if regime == "accumulate"
                  else jc.theory.ols_replace_expected_error(n_gen, t, d))
        for n_chains in args.chains:
            def run():
                res = jc.simulate(jax.random.key(0), fam, src, n_chains=n_chains, n_generations=n_gen, n_samples=t,
                                  regime=stage, record=("param_error",))
                return np.asarray(res.metrics["param_error"])
            began = time.perf_counter()
            run()
            first = time.perf_counter() - began
            t_jax, risk = time_call(run)
            acc = regime == "accumulate"
            t_same, np_risk = time_call(lambda: numpy_same_algorithm(rng, n_chains, n_gen, t, d, design, acc))
            if design == "fixed":
                t_proj, _ = time_call(lambda: numpy_projection(rng, n_chains, n_gen, t, d, acc))
                proj = f"{n_chains * (n_gen + 1) / t_proj:>13.3g} {t_proj / t_jax:>6.2f}"
            else:
                proj = f"{'-':>13} {'-':>6}"
            hand = jax_hand_scan(n_chains, n_gen, t, d, design, acc)
            hand()  # compile
            t_hand, hand_risk = time_call(hand)
            work = n_chains * (n_gen + 1)
            print(f"{design:>6} {regime:>10} {n_chains:>7} {work / t_jax:>10.3g} {work / t_same:>13.3g}"
                  f" {t_same / t_jax:>6.2f} {proj} {work / t_hand:>13.3g} {t_hand / t_jax:>6.2f}"
                  f" {first - t_jax:>9.2f} {risk[:, -1].mean():>10.4f} {np_risk[:, -1].mean():>8.4f}"
                  f" {hand_risk[:, -1].mean():>8.4f} {theory:>8.4f}")


if __name__ == "__main__":
    main()
