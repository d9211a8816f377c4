"""Shumailov et al.'s VAE experiment, over many chains, on scikit-learn's 8x8 digits (no download).

Each generation trains a VAE from scratch on the decoder means of z ~ N(0, I) from the previous
generation's model (generation 0 on real digits). The paper's metric: encode each generation's
generated images with the *generation-0* encoder and look at the density of the latent means;
on MNIST its std fell 0.674, 0.608, 0.527, 0.468, 0.433 over generations 0..4.

Figures (written to experiments/figures/):
  paper_vae_samples.png   decoded samples per generation (rows), one chain
  paper_vae_latents.png   density of generation-0-encoder latent means per generation, all chains
  paper_vae_std.png       latent std per generation: median and spread across chains, each chain
  paper_vae_quality.png   held-out ELBO and diversity of generated images per generation

Run:  python experiments/paper_vae.py [--n-chains 16] [--n-generations 6] [--architecture mlp|conv]
      python experiments/paper_vae.py --mnist path/to/mnist.npz   (28x28, conv, latent 20)
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxcollapse as jc  # noqa: E402
from jaxcollapse import vae_metrics  # noqa: E402
from jaxcollapse.datasets import load_digits, load_mnist_npz  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-chains", type=int, default=16)
    ap.add_argument("--n-generations", type=int, default=6)
    ap.add_argument("--n-samples", type=int, default=1400)
    ap.add_argument("--n-steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--latent-dim", type=int, default=8)
    ap.add_argument("--architecture", default="mlp", choices=["mlp", "conv"])
    ap.add_argument("--mnist", default=None, help="local mnist.npz (else scikit-learn's digits)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(HERE, "figures"))
    args = ap.parse_args(argv)

    if args.mnist:
        train, heldout, _, y_heldout = load_mnist_npz(args.mnist, return_labels=True)
        image_shape, hidden = (28, 28), (32, 64)
    else:
        train, heldout, _, y_heldout = load_digits(seed=args.seed, return_labels=True)
        image_shape, hidden = (8, 8), ((16, 32) if args.architecture == "conv" else (128,))
    fam = jc.VAE(latent_dim=args.latent_dim, hidden=hidden, architecture=args.architecture,
                 n_steps=args.n_steps, batch_size=args.batch_size, learning_rate=1e-3,
                 next_data="mean", init="scratch", image_shape=image_shape)
    n_samples = min(args.n_samples, len(train))
    G = args.n_generations

    began = time.perf_counter()
    res = jc.simulate(jax.random.key(args.seed), fam, train, n_chains=args.n_chains,
                      n_generations=G, n_samples=n_samples)
    train_seconds = time.perf_counter() - began

    # the paper's metric, from the recorded parameter histories [n_chains, G+1, ...]
    heldout_j = jnp.asarray(heldout)
    key = jax.random.key(args.seed + 1)
    n_eval = 1000

    @jax.jit
    def analyse(history):
        latents = vae_metrics.gen0_latents(fam, history, key, n_eval)          # [G+1, n, latent]
        images = jax.lax.map(lambda p: fam.generate(key, p, 256), history)     # [G+1, 256, h, w]
        elbo = jax.lax.map(lambda p: vae_metrics.heldout_elbo(fam, p, heldout_j), history)
        diversity = jax.lax.map(vae_metrics.mean_pairwise_distance, images)
        distinct = jax.lax.map(lambda im: vae_metrics.n_distinct_nearest(im, heldout_j, y_heldout), images)
        return latents, images[:, :64], elbo, diversity, distinct

    latents, grids, elbo, diversity, distinct = jax.device_get(jax.lax.map(analyse, res.params))
    flat = latents.reshape(args.n_chains, G + 1, -1)
    latent_std = flat.std(axis=-1)  # [n_chains, G+1]
    latent_mean = flat.mean(axis=-1)

    os.makedirs(args.out, exist_ok=True)
    gens = np.arange(G + 1)
    _samples_figure(grids[0], gens, os.path.join(args.out, "paper_vae_samples.png"))
    _latents_figure(flat, gens, os.path.join(args.out, "paper_vae_latents.png"))
    _std_figure(latent_std, gens, os.path.join(args.out, "paper_vae_std.png"))
    _quality_figure(elbo, diversity, distinct, gens, os.path.join(args.out, "paper_vae_quality.png"))

    summary = {
        "data": "mnist.npz" if args.mnist else "sklearn digits 8x8",
        "n_chains": args.n_chains, "n_generations": G, "n_samples": n_samples,
        "family": {"latent_dim": fam.latent_dim, "hidden": list(fam.hidden), "architecture": fam.architecture,
                   "n_steps": fam.n_steps, "batch_size": fam.batch_size},
        "train_seconds": round(train_seconds, 1),
        "latent_std_mean": latent_std.mean(0).round(4).tolist(),
        "latent_std_sd_across_chains": latent_std.std(0, ddof=1).round(4).tolist(),
        "latent_mean_mean": latent_mean.mean(0).round(4).tolist(),
        "heldout_elbo_mean": elbo.mean(0).round(3).tolist(),
        "diversity_mean": diversity.mean(0).round(4).tolist(),
        "distinct_nearest_digits_mean": distinct.mean(0).round(2).tolist(),
        "fits_finite": bool(np.all(res.info.finite)),
        "paper_mnist_latent_std": [0.674, 0.608, 0.527, 0.468, 0.433],
    }
    with open(os.path.join(args.out, "paper_vae_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))
    return summary


def _samples_figure(grids, gens, path):
    """grids [G+1, 64, h, w]: one row per generation, 16 samples each."""
    n_cols = 16
    fig, axes = plt.subplots(len(gens), 1, figsize=(n_cols * 0.6, len(gens) * 0.75))
    for row, g in enumerate(gens):
        strip = np.concatenate([np.pad(im, 1, constant_values=0.0) for im in grids[g][:n_cols]], axis=1)
        axes[row].imshow(strip, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        axes[row].set_xticks([])
        axes[row].set_yticks([])
        axes[row].set_ylabel(f"gen {g}", rotation=0, ha="right", va="center")
    fig.suptitle("Decoder means of z ~ N(0, I), one chain, by generation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _latents_figure(flat, gens, path):
    """Density (over all chains, images, latent dims) of generation-0-encoder latent means."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lo, hi = np.percentile(flat, [0.5, 99.5])
    bins = np.linspace(lo, hi, 120)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(gens)))
    for g, colour in zip(gens, colours):
        values = flat[:, g].ravel()
        ax.hist(values, bins=bins, density=True, histtype="step", lw=1.6, color=colour,
                label=f"gen {g}: std {flat[:, g].std(axis=-1).mean():.3f}")
    ax.set_xlabel("latent mean under the generation-0 encoder")
    ax.set_ylabel("density")
    ax.set_title(f"Generated images encoded by the generation-0 encoder ({flat.shape[0]} chains)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _std_figure(latent_std, gens, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for chain in latent_std:
        ax.plot(gens, chain, color="tab:blue", alpha=0.2, lw=0.8)
    q10, q50, q90 = np.percentile(latent_std, [10, 50, 90], axis=0)
    ax.fill_between(gens, q10, q90, color="tab:blue", alpha=0.25, label="10-90% of chains")
    ax.plot(gens, q50, color="tab:blue", lw=2, marker="o", label="median over chains")
    paper = [0.674, 0.608, 0.527, 0.468, 0.433]
    ax.plot(np.arange(len(paper)), paper, color="tab:red", ls="--", marker="s",
            label="paper (MNIST, one run)")
    ax.set_xlabel("generation")
    ax.set_ylabel("std of latent means (generation-0 encoder)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title(f"Collapse of latent spread, {latent_std.shape[0]} chains")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _quality_figure(elbo, diversity, distinct, gens, path):
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, values, label in [(axes[0], elbo, "held-out ELBO (nats / image)"),
                              (axes[1], diversity, "mean pairwise distance of generations"),
                              (axes[2], distinct, "distinct nearest real digit classes")]:
        mean = values.mean(0)
        se = values.std(0, ddof=1) / np.sqrt(values.shape[0])
        ax.errorbar(gens, mean, yerr=2 * se, marker="o", capsize=3)
        ax.set_xlabel("generation")
        ax.set_title(label, fontsize=10)
    fig.suptitle("Mean over chains, ±2 standard errors")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
