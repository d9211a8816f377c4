"""N-gram chains: jaxcollapse.simulate against what researchers write, side by side.

The setting of experiments/paper_lm.toml without nucleus decoding: a word bigram (vocabulary
capped at 1000 with <unk>), add-alpha smoothing 0.001, 64-word blocks, every real training block
prompts one continuation per generation (904 blocks), replace; each generation records the
held-out perplexity. Baselines, same settings:

  counter    one chain at a time: bigram counts with collections.Counter, one row distribution per
             context, every next word drawn with NumPy (the first script a researcher writes);
             timed on few chains and generations, reported per chain-generation
  numpy      all chains at once: counts with np.bincount on flat (chain, context, word) indices,
             row CDFs, every position drawn for every block of every chain with one searchsorted
             (what a careful researcher writes)

    python benchmarks/ngram.py [--chains 1 8 32] [--generations 10] [--counter-chains 1]
"""
from __future__ import annotations

import argparse
import collections
import platform
import time

import jax
import numpy as np

import jaxcollapse as jc

ALPHA = 0.001


def counter_chain(rng, train, heldout, vocab_size, n_generations):
    """One chain: Counter counts, a dict of row distributions, a Python loop over positions."""
    blocks = [list(b) for b in train]
    perplexities = []
    for g in range(n_generations + 1):
        counts = collections.Counter((a, b) for block in blocks for a, b in zip(block, block[1:]))
        rows = collections.defaultdict(lambda: np.zeros(vocab_size))
        for (a, b), c in counts.items():
            rows[a][b] += c
        unigram = np.zeros(vocab_size)
        for (_, b), c in counts.items():
            unigram[b] += c
        unigram = (unigram + ALPHA) / (unigram.sum() + ALPHA * vocab_size)
        probs = {a: (r + ALPHA) / (r.sum() + ALPHA * vocab_size) for a, r in rows.items()}
        log_p = sum(np.log(probs.get(a, unigram)[b]) for block in heldout for a, b in zip(block, block[1:]))
        perplexities.append(np.exp(-log_p / (len(heldout) * (len(heldout[0]) - 1))))
        if g == n_generations:
            break
        new = []
        for prompt in train:  # every real block prompts once
            block = [int(prompt[0])]
            for _ in range(len(prompt) - 1):
                block.append(int(rng.choice(vocab_size, p=probs.get(block[-1], unigram))))
            new.append(block)
        blocks = new
    return np.asarray(perplexities)


def numpy_chains(rng, train, heldout, vocab_size, n_chains, n_generations):
    """All chains at once: flat bincount, row CDFs offset by their row index, one searchsorted per position."""
    v = vocab_size
    n, block = train.shape
    blocks = np.broadcast_to(train, (n_chains, n, block))
    chain = np.arange(n_chains)[:, None, None]
    out = np.empty((n_chains, n_generations + 1))
    for g in range(n_generations + 1):
        flat = ((chain * v + blocks[:, :, :-1]) * v + blocks[:, :, 1:]).ravel()
        counts = np.bincount(flat, minlength=n_chains * v * v).reshape(n_chains, v, v).astype(np.float64)
        rows = counts.sum(-1, keepdims=True)
        unigram = counts.sum(1, keepdims=True)
        unigram = (unigram + ALPHA) / (unigram.sum(-1, keepdims=True) + ALPHA * v)
        probs = np.where(rows > 0, (counts + ALPHA) / (rows + ALPHA * v), unigram)
        log_probs = np.log(probs)
        scored = log_probs[:, heldout[:, :-1], heldout[:, 1:]].sum(axis=(1, 2))
        out[:, g] = np.exp(-scored / (heldout.shape[0] * (block - 1)))
        if g == n_generations:
            break
        cdf = np.cumsum(probs, axis=-1)
        cdf /= cdf[..., -1:]
        cdf += np.arange(n_chains * v).reshape(n_chains, v, 1)  # row r's CDF lives in [r, r + 1]
        cdf = cdf.ravel()
        new = np.empty((n_chains, n, block), np.int64)
        new[:, :, 0] = train[None, :, 0]
        row = chain[:, :, 0] * v + new[:, :, 0]
        for t in range(1, block):
            index = np.searchsorted(cdf, row + rng.random(row.shape), side="right")
            new[:, :, t] = np.minimum(index - row * v, v - 1)
            row = chain[:, :, 0] * v + new[:, :, t]
        blocks = new
    return out


def jax_chains(key, fam, source, n_chains, n_generations, n_samples):
    res = jc.simulate(key, fam, source, n_chains=n_chains, n_generations=n_generations, n_samples=n_samples,
                      record=["heldout_perplexity"])
    return np.asarray(res.metrics["heldout_perplexity"])


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chains", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--counter-chains", type=int, default=1)
    ap.add_argument("--counter-generations", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    text = jc.datasets.load_text("word", block=64, vocab_size=1000)
    train, heldout, v = text.train, text.heldout, len(text.vocab)
    fam = jc.NGram(2, v, ALPHA, block=64, tokenizer="word", n_eval=1)
    source = jc.Source(data=train, heldout=heldout)
    n = train.shape[0]
    print(f"{platform.node()} {platform.processor() or platform.machine()}, jax {jax.__version__} "
          f"{jax.default_backend()}; word bigram V={v}, {n} blocks of 64 per generation, "
          f"{args.generations} generations")

    counter_gens = args.counter_generations
    began = time.perf_counter()
    rng = np.random.default_rng(0)
    counter = [counter_chain(rng, train, heldout, v, counter_gens) for _ in range(args.counter_chains)]
    counter_rate = args.counter_chains * (counter_gens + 1) / (time.perf_counter() - began)
    print(f"counter (Python loop, {args.counter_chains} chain x {counter_gens + 1} fits): "
          f"{counter_rate:.3g} chain-generations/s; held-out perplexity {np.round(counter[0], 1)}")

    print(f"{'chains':>7} {'numpy s':>9} {'jax s (run)':>12} {'jax compile+run s':>18} {'jax/numpy':>10} "
          f"{'jax/counter':>12} {'ppl numpy':>10} {'ppl jax':>9}")
    for c in args.chains:
        t_numpy, ppl_numpy = best_of(1 if c > 8 else args.repeats,
                                     lambda: numpy_chains(np.random.default_rng(1), train, heldout, v, c,
                                                          args.generations))
        first_began = time.perf_counter()
        jax_chains(jax.random.key(0), fam, source, c, args.generations, n)
        first = time.perf_counter() - first_began
        t_jax, ppl_jax = best_of(args.repeats, lambda: jax_chains(jax.random.key(0), fam, source, c,
                                                                   args.generations, n))
        rate = c * (args.generations + 1)
        print(f"{c:>7} {t_numpy:>9.2f} {t_jax:>12.2f} {first:>18.2f} {t_numpy / t_jax:>10.1f} "
              f"{rate / t_jax / counter_rate:>12.0f} {np.median(ppl_numpy[:, -1]):>10.1f} "
              f"{np.median(ppl_jax[:, -1]):>9.1f}")


if __name__ == "__main__":
    main()
