"""Shumailov et al. ("The Curse of Recursion"), GMM experiment, over many chains.

Source: one 2-D blob N(0, I_2); model: a 2-component full-covariance GMM fitted by EM
(tol 1e-5, max_iter 2000, k-means init afresh each generation, as the paper's scikit-learn
code); 1000 samples per generation; 2050 generations. Figures:
  gmm_generations.png  samples and fitted density contours of one chain at generations
                       0, 50, 100, 150, 200, 350, 2000 (those within the run)
  gmm_l2.png           L2 distance (integral of (p_g - p_0)^2) to generation 0 and component
                       std over generations: median and 10-90% band over chains, log scale

Run small:  python experiments/paper_gmm.py --n-chains 8 --n-generations 200
"""
from __future__ import annotations

import argparse
import pathlib
import time

import jax
import numpy as np

SETTINGS = dict(
    n_chains=16,
    n_generations=2050,
    n_samples=1000,
    n_components=2,
    covariance="full",
    tol=1e-5,
    max_iter=2000,
    init="kmeans++",
    figure_generations=[0, 50, 100, 150, 200, 350, 2000],
    chunk_size=50,
    seed=0,
    out="results/paper_gmm",
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in SETTINGS.items():
        if isinstance(value, list):
            parser.add_argument("--" + name.replace("_", "-"), type=int, nargs="+", default=value)
        else:
            parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    return parser.parse_args()


def run(cfg):
    import jaxcollapse as jc

    fam = jc.GMM(cfg.n_components, dim=2, covariance=cfg.covariance, tol=cfg.tol, max_iter=cfg.max_iter,
                 init=cfg.init)
    src = fam.make_params(weights=[1.0], means=[[0.0, 0.0]], covs=[np.eye(2)])
    snapshot_at = [g for g in cfg.figure_generations if g <= cfg.n_generations]

    def progress(done, total, seconds):
        print(f"  generation {done}/{total}  {seconds:.1f} s", flush=True)

    res = jc.simulate(jax.random.key(cfg.seed), fam, src, n_chains=cfg.n_chains, n_generations=cfg.n_generations,
                      n_samples=cfg.n_samples, snapshot_at=snapshot_at, chunk_size=cfg.chunk_size,
                      progress=progress)
    return fam, src, res


def l2_to_generation0(params):
    """[n_chains, n_generations + 1] closed-form L2 (squared) distance of each generation to generation 0."""
    from jaxcollapse import mixture_metrics

    return mixture_metrics.l2_to_generation(params, 0)


def plot(cfg, res, l2, out: pathlib.Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxcollapse.plots import points_and_density

    gens = list(res.snapshot_at)
    fig, axes = plt.subplots(1, len(gens), figsize=(2.6 * len(gens), 2.9), squeeze=False)
    chain = 0
    for ax, slot in zip(axes[0], range(len(gens))):
        g = gens[slot]
        mixture = tuple(np.asarray(a[chain, g], np.float64) for a in res.params)
        points_and_density(ax, res.snapshots[chain, slot], mixture, half=3.5 if g == 0 else None)
        ax.set_title(f"generation {g}", fontsize=9)
    fig.suptitle(f"GMM (K={cfg.n_components}) refitted on its own samples, source N(0, I2); chain {chain} "
                 f"(axes zoom with the fit)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "gmm_generations.png", dpi=130)
    plt.close(fig)

    generations = np.arange(l2.shape[1])
    std = np.asarray(res.metrics["component_std"]).mean(-1)  # mean over the components
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, values, label in [(axes[0], l2[:, 1:], "L2 distance to generation 0  (integral (p_g - p_0)^2)"),
                              (axes[1], std[:, 1:], "component std (sqrt(trace/2), mean over components)")]:
        lo, med, hi = np.percentile(values, [10, 50, 90], axis=0)
        ax.fill_between(generations[1:], lo, hi, alpha=0.3, label="10-90% of chains")
        ax.plot(generations[1:], med, label="median")
        ax.plot(generations[1:], values[0], lw=0.6, color="gray", label="chain 0")
        ax.set_yscale("log")
        ax.set_xlabel("generation")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{res.n_chains} chains, {cfg.n_samples} samples per generation", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "gmm_l2.png", dpi=130)
    plt.close(fig)


def main():
    cfg = parse_args()
    out = pathlib.Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    fam, src, res = run(cfg)
    seconds = time.perf_counter() - began
    l2 = l2_to_generation0(res.params)
    plot(cfg, res, l2, out)
    std = np.asarray(res.metrics["component_std"])
    n_iter = np.asarray(res.info.n_iter)
    chain_generations = cfg.n_chains * (cfg.n_generations + 1)
    print(f"{cfg.n_chains} chains x {cfg.n_generations + 1} fits in {seconds:.1f} s "
          f"({chain_generations / seconds:.1f} chain-generations/s, compile included)")
    print(f"EM iterations: mean {n_iter.mean():.1f}, max {n_iter.max()}; "
          f"converged {np.mean(res.info.converged):.4f}; finite {np.mean(res.info.finite):.4f}")
    for g in res.snapshot_at:
        print(f"generation {g:5d}: component std median {np.median(std[:, g]):.4g} "
              f"[10%: {np.percentile(std[:, g], 10):.3g}, 90%: {np.percentile(std[:, g], 90):.3g}]; "
              f"L2 to gen 0 median {np.median(l2[:, g]):.3g}")
    np.savez(out / "gmm_summary.npz", l2_to_generation0=l2, component_std=std, n_iter=n_iter,
             converged=np.asarray(res.info.converged), log_lik=np.asarray(res.info.log_lik))
    print(f"figures in {out}/")


if __name__ == "__main__":
    main()
