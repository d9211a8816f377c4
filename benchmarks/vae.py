"""VAE chains: N chains under vmap (one simulate call) vs the same N chains one after another.

Both sides run the same code, jaxcollapse.simulate: the sequential side replays each chain with
simulate(res.chain_key(i), ..., n_chains=1), so it does exactly the same arithmetic. Compilation
is excluded on both sides (a warm-up call per shape first); each timing is the best of --repeats.

Run:  python benchmarks/vae.py [--chains 1 4 8 16 32] [--n-steps 500] [--n-generations 2]
"""
from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

import jaxcollapse as jc
from jaxcollapse.datasets import load_digits


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        jax.block_until_ready(jax.tree_util.tree_leaves(out))
        times.append(time.perf_counter() - began)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    ap.add_argument("--n-generations", type=int, default=2)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--n-steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--latent-dim", type=int, default=8)
    ap.add_argument("--architecture", default="mlp", choices=["mlp", "conv"])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    train, heldout = load_digits(seed=0)
    source = jc.Source(data=train, heldout=heldout)  # elbo_source scores held-out digits
    hidden = (16, 32) if args.architecture == "conv" else (args.hidden,)
    fam = jc.VAE(latent_dim=args.latent_dim, hidden=hidden, architecture=args.architecture,
                 n_steps=args.n_steps, batch_size=args.batch_size)
    run = dict(n_generations=args.n_generations, n_samples=args.n_samples)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {platform.processor() or platform.machine()}")
    print(f"VAE {args.architecture} hidden={hidden} latent={args.latent_dim}, {args.n_steps} Adam steps x batch "
          f"{args.batch_size} per generation, {args.n_generations + 1} fits per chain, n_samples={args.n_samples}")

    one = lambda key: jc.simulate(key, fam, source, n_chains=1, **run)  # noqa: E731
    one(jax.random.key(0))  # compile the one-chain program once
    print(f"{'N':>4} {'vmap s':>9} {'sequential s':>13} {'speed-up':>9} {'vmap s/chain':>13} {'max |diff|':>11}")
    rows = []
    for n in args.chains:
        many = lambda: jc.simulate(jax.random.key(1), fam, source, n_chains=n, **run)  # noqa: E731
        many()  # compile this N
        t_vmap, res = best_of(args.repeats, many)

        def sequential():
            return [one(res.chain_key(i)) for i in range(n)]

        t_seq, alone = best_of(args.repeats, sequential)
        diff = max(float(np.max(np.abs(res.metrics["elbo_source"][i] - np.asarray(alone[i].metrics["elbo_source"]).reshape(-1))))
                   for i in range(n))
        rows.append((n, t_vmap, t_seq))
        print(f"{n:>4} {t_vmap:>9.2f} {t_seq:>13.2f} {t_seq / t_vmap:>8.1f}x {t_vmap / n:>13.3f} {diff:>11.2e}")
    return rows


if __name__ == "__main__":
    main()
