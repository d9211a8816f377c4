"""The paper's GMM chain hand-vectorised in NumPy over chains: the strongest plain-CPU baseline.

What a careful researcher writes to run many chains without JAX: every array carries the chain
axis first ([C, K, d, n] for per-component, per-point quantities), the linear algebra is batched
(np.matmul over [C, K] stacks, np.linalg on [C, K, d, d]), and EM keeps an active set: a chain
that has converged leaves the working arrays, so the others iterate on a shrinking batch.

Each generation does what jaxcollapse's GMM does: draw n points from the current mixture, start
EM from jaxcollapse's k-means init (k-means++ seeds with one candidate per step, a fixed number of
weighted Lloyd steps, hard labels, one M-step), then run scikit-learn's EM recurrence (E-step at
theta gives the mean log-likelihood L, M-step gives the next theta; stop when |L - L_prev| < tol
or after max_iter M-steps; nk + 10 eps; reg_covar on the diagonal). A component that loses all its
points is not re-seeded (as in scikit-learn); with K = 2 from a k-means start it does not happen
in the benchmark's settings. dtype float32 for the benchmark; the test runs float64 against
scikit-learn.

    python benchmarks/numpy_gmm.py --n-chains 256 --n-generations 20
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np


# ------------------------------------------------------------------ sampling
def pick(rng, cumulative, dtype):
    """One index per row drawn with probability proportional to the increments of cumulative [C, m]."""
    u = rng.random(cumulative.shape[0], dtype=dtype) * cumulative[:, -1]
    return np.minimum(np.sum(cumulative <= u[:, None], -1), cumulative.shape[1] - 1)


def sample(rng, weights, means, covs, n):
    """n draws per chain from the mixtures (weights [C, K], means [C, K, d], covs [C, K, d, d]) -> [C, d, n]."""
    C, K, d = means.shape
    dtype = means.dtype
    cumulative = np.cumsum(weights, -1)
    u = rng.random((C, n), dtype=dtype) * cumulative[:, -1:]
    comp = np.minimum(np.sum(cumulative[:, :, None] <= u[:, None, :], 1), K - 1)     # [C, n]
    z = rng.standard_normal((C, d, n), dtype=dtype)
    chol = np.linalg.cholesky(covs)                                                   # [C, K, d, d]
    every = np.einsum("ckde,cen->ckdn", chol, z) + means[..., None]                  # [C, K, d, n]
    x = every[:, 0]
    for k in range(1, K):  # a select per component (take_along_axis over K is ~2x slower)
        x = np.where(comp[:, None, :] == k, every[:, k], x)
    return x


# ------------------------------------------------------------------ initialisation
def kmeans_plus_plus(rng, xt, K):
    """k-means++ seeds [C, K, d] (one candidate per step, as jaxcollapse)."""
    C, d, n = xt.shape
    dtype = xt.dtype
    rows = np.arange(C)
    first = pick(rng, np.broadcast_to(np.arange(1, n + 1, dtype=dtype), (C, n)), dtype)
    centres = np.empty((C, K, d), dtype)
    centres[:, 0] = xt[rows, :, first]
    d2 = np.sum((xt - centres[:, 0, :, None]) ** 2, 1)                                # [C, n]
    for k in range(1, K):
        total = d2.sum(-1, keepdims=True)
        weights = np.where(total > 0, d2, 1.0)  # all distances zero (collapsed data): uniform
        chosen = pick(rng, np.cumsum(weights, -1), dtype)
        centres[:, k] = xt[rows, :, chosen]
        d2 = np.minimum(d2, np.sum((xt - centres[:, k, :, None]) ** 2, 1))
    return centres


def squared_distances(xt, centres):
    """[C, K, n] from centres [C, K, d] to points xt [C, d, n]."""
    return np.sum((xt[:, None] - centres[:, :, :, None]) ** 2, 2)


def nearest(xt, centres):
    """Index [C, n] of the nearest centre (ties: lowest k): a running minimum over the centres
    (np.argmin over a short middle axis is ~10x slower)."""
    d2 = squared_distances(xt, centres)
    best, labels = d2[:, 0], np.zeros(d2[:, 0].shape, np.intp)
    for k in range(1, centres.shape[1]):
        closer = d2[:, k] < best
        best, labels = np.where(closer, d2[:, k], best), np.where(closer, k, labels)
    return labels


def lloyd(centres, xt, n_iter):
    """n_iter Lloyd steps (ties: lowest k); an empty cluster keeps its centre."""
    K = centres.shape[1]
    for _ in range(n_iter):
        labels = nearest(xt, centres)                                                 # [C, n]
        member = (labels[:, None, :] == np.arange(K)[None, :, None]).astype(xt.dtype)  # [C, K, n]
        counts = member.sum(-1)
        sums = np.einsum("ckn,cdn->ckd", member, xt)                                  # [C, K, d]
        centres = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1)[..., None], centres)
    return centres


def kmeans_responsibilities(rng, xt, K, n_lloyd):
    """Hard labels [C, K, n] of jaxcollapse's k-means init (k-means++ seeds, n_lloyd Lloyd steps)."""
    centres = lloyd(kmeans_plus_plus(rng, xt, K), xt, n_lloyd)
    labels = nearest(xt, centres)
    return (labels[:, None, :] == np.arange(K)[None, :, None]).astype(xt.dtype)


# ------------------------------------------------------------------ EM
def m_step(xt, resp, reg_covar):
    """(weights [C, K], means [C, K, d], covs [C, K, d, d]) from responsibilities resp [C, K, n]."""
    d = xt.shape[1]
    dtype = xt.dtype
    nk = resp.sum(-1) + 10 * np.finfo(dtype).eps                                      # [C, K]
    means = np.einsum("ckn,cdn->ckd", resp, xt) / nk[..., None]                       # [C, K, d]
    diff = xt[:, None] - means[..., None]                                             # [C, K, d, n]
    covs = np.einsum("ckdn,cken->ckde", resp[:, :, None] * diff, diff) / nk[..., None, None]
    covs += reg_covar * np.eye(d, dtype=dtype)
    return nk / nk.sum(-1, keepdims=True), means, covs


def e_step(xt, weights, means, covs):
    """(mean log-likelihood per chain [C], responsibilities [C, K, n]), in log space."""
    d, n = xt.shape[1:]
    inv_chol = np.linalg.inv(np.linalg.cholesky(covs))                                # [C, K, d, d]
    y = np.einsum("ckde,cken->ckdn", inv_chol, xt[:, None] - means[..., None])        # [C, K, d, n]
    half_log_det = np.log(np.diagonal(inv_chol, axis1=-2, axis2=-1)).sum(-1)          # log det L^-1
    const = np.log(weights) + half_log_det - 0.5 * d * math.log(2 * math.pi)          # [C, K]
    joint = np.einsum("ckdn,ckdn->ckn", y, y)                                         # [C, K, n]
    joint *= -0.5
    joint += const[..., None]
    top = joint.max(1, keepdims=True)                                                 # [C, 1, n]
    joint -= top
    resp = np.exp(joint, out=joint)
    total = resp.sum(1, keepdims=True)
    resp /= total
    log_norm = np.log(total[:, 0]) + top[:, 0]                                        # [C, n]
    return log_norm.mean(-1), resp


def em(xt, weights, means, covs, *, tol, max_iter, reg_covar):
    """EM on every chain from the given mixtures, an active set of chains still iterating.

    Returns (weights, means, covs, n_iter [C], converged [C]).
    """
    C = xt.shape[0]
    weights, means, covs = weights.copy(), means.copy(), covs.copy()
    n_iter = np.zeros(C, np.int64)
    converged = np.zeros(C, bool)
    prev = np.full(C, -np.inf, xt.dtype)
    active = np.arange(C)
    x_act, w_act, m_act, c_act = xt, weights, means, covs
    while active.size:
        ll, resp = e_step(x_act, w_act, m_act, c_act)
        w_act, m_act, c_act = m_step(x_act, resp, reg_covar)
        n_iter[active] += 1
        done = np.abs(ll - prev[active]) < tol
        prev[active] = ll
        converged[active] = done
        weights[active], means[active], covs[active] = w_act, m_act, c_act
        still = ~done & (n_iter[active] < max_iter)
        if not still.all():  # the finished chains leave the working arrays
            active = active[still]
            x_act, w_act, m_act, c_act = x_act[still], w_act[still], m_act[still], c_act[still]
    return weights, means, covs, n_iter, converged


def fit(rng, xt, K, *, tol, max_iter, reg_covar, n_lloyd=10):
    """k-means init, then EM: (weights, means, covs, n_iter, converged)."""
    resp = kmeans_responsibilities(rng, xt, K, n_lloyd)
    return em(xt, *m_step(xt, resp, reg_covar), tol=tol, max_iter=max_iter, reg_covar=reg_covar)


def run_chains(rng, n_chains, n_generations, n_samples, *, K=2, dim=2, tol=1e-5, max_iter=2000, reg_covar=1e-6,
               dtype=np.float32):
    """The paper's chains from N(0, I_dim): per generation sample, k-means init, EM.

    Returns (component std at the last generation [C, K], EM iterations [C, n_generations + 1]).
    """
    xt = rng.standard_normal((n_chains, dim, n_samples), dtype=dtype)
    iterations = np.empty((n_chains, n_generations + 1), np.int64)
    for g in range(n_generations + 1):
        mixture = fit(rng, xt, K, tol=tol, max_iter=max_iter, reg_covar=reg_covar)
        iterations[:, g] = mixture[3]
        if g < n_generations:
            xt = sample(rng, *mixture[:3], n_samples)
    stds = np.sqrt(np.trace(mixture[2], axis1=-2, axis2=-1) / dim)
    return stds, iterations


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-chains", type=int, default=256)
    parser.add_argument("--n-generations", type=int, default=20)
    parser.add_argument("--n-samples", type=int, default=1000)
    cfg = parser.parse_args()
    began = time.perf_counter()
    _, iterations = run_chains(np.random.default_rng(0), cfg.n_chains, cfg.n_generations, cfg.n_samples)
    seconds = time.perf_counter() - began
    print(f"{cfg.n_chains} chains x {cfg.n_generations + 1} fits: {seconds:.2f} s, "
          f"{iterations.size / seconds:.1f} chain-generations/s, EM iterations mean {iterations.mean():.1f}")


if __name__ == "__main__":
    main()
