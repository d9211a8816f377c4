"""Transformer chains: N chains under vmap (one simulate call) vs the same N chains one after another.

Both sides run the same code, jaxcollapse.simulate: the sequential side replays each chain with
simulate(res.chain_key(i), ..., n_chains=1), a Python loop, so it does the same arithmetic.
Compilation is excluded on both sides (a warm-up call per shape first); each timing is the best
of --repeats. The default model is the one of experiments/paper_lm_transformer.toml, on fewer
blocks and epochs so a row takes seconds: character blocks of 64, 2 layers of width 64.

Run:  python benchmarks/transformer.py [--chains 1 4 16] [--n-samples 64] [--epochs 1]
"""
from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

import jaxcollapse as jc


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        jax.block_until_ready(jax.tree_util.tree_leaves(out))
        times.append(time.perf_counter() - began)
    return min(times), out


def family(args) -> jc.Transformer:
    return jc.Transformer(vocab_size=args.vocab_size, block=args.block, d_model=args.d_model, n_heads=4,
                          n_layers=args.n_layers, epochs=args.epochs, batch_size=args.batch_size,
                          learning_rate=3e-3, prompt_length=4, decoding=args.decoding, n_eval=args.n_eval,
                          tokenizer="char")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--n-generations", type=int, default=2)
    ap.add_argument("--n-samples", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--n-eval", type=int, default=16)
    ap.add_argument("--decoding", default="sample", choices=["sample", "beam"])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    text = jc.datasets.load_text("char", block=args.block)
    args.vocab_size = len(text.vocab)
    source = jc.Source(data=text.train, heldout=text.heldout[:64])
    fam = family(args)
    run = dict(n_generations=args.n_generations, n_samples=args.n_samples, regime=jc.fresh_real(0.25),
               record=["heldout_perplexity", "generated_perplexity"])
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {platform.processor() or platform.machine()}, "
          f"jax {jax.__version__}")
    print(f"Transformer d_model={args.d_model} layers={args.n_layers} block={args.block} V={args.vocab_size}, "
          f"{args.epochs} epoch(s) of {args.n_samples} blocks (batch {args.batch_size}) per generation, "
          f"{args.n_generations + 1} fits per chain, decoding={args.decoding}")

    one = lambda key: jc.simulate(key, fam, source, n_chains=1, **run)  # noqa: E731
    one(jax.random.key(0))  # compile the one-chain program once
    print(f"{'N':>4} {'vmap s':>9} {'sequential s':>13} {'speed-up':>9} {'vmap s/chain':>13} {'max rel diff':>13}")
    rows = []
    for n in args.chains:
        many = lambda: jc.simulate(jax.random.key(1), fam, source, n_chains=n, **run)  # noqa: E731
        many()  # compile this N
        t_vmap, res = best_of(args.repeats, many)

        def sequential():
            return [one(res.chain_key(i)) for i in range(n)]

        t_seq, alone = best_of(args.repeats, sequential)
        metric = "heldout_perplexity"
        diff = max(float(np.max(np.abs(res.metrics[metric][i] / np.asarray(alone[i].metrics[metric]).reshape(-1) - 1)))
                   for i in range(n))
        rows.append((n, t_vmap, t_seq))
        print(f"{n:>4} {t_vmap:>9.2f} {t_seq:>13.2f} {t_seq / t_vmap:>8.2f}x {t_vmap / n:>13.3f} {diff:>13.2e}",
              flush=True)
    return rows


if __name__ == "__main__":
    main()
