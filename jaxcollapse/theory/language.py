"""Closed forms of n-gram chains (ORACLES.md section 8; Seddik et al. 2024, "How Bad is Training
on Synthetic Data?"), re-exported by jaxcollapse.theory.

Setting: contexts held at real prompts. Generation 0 is the model fitted to the real text (its
rows p_0(. | c) are the real text's empirical next-token frequencies); every later generation
draws, for each context c, the same number n_c of next tokens from the current row (block =
order, prompted: each block is one real context and one generated token, and every real block
prompts once per generation) and refits by frequencies (smoothing 0, temperature 1, no
truncation). Each row is then a Wright-Fisher chain with n = n_c draws:

    E[S_m | S_0] = 1 - (1 - 1/n)^m (1 - S_0),      S = sum_v p(v | c)^2, m = 0, 1, 2, ...

from E[p'_v^2 | p] = p_v (1 - p_v) / n + p_v^2, so 1 - E S' = (1 - 1/n)(1 - S); E p_m = p_0;
token v of row c is still alive at generation m >= 1 with the probability that a Wright-Fisher
state of source probability p_0(v | c) survives m fits of n draws (categorical_survival_probs
with generation index m - 1, since that function counts fits from the source and here the first
fit, on real text, is exact). A unigram chain (order 1) is a Categorical chain with
n_samples * block draws per generation.
"""
from __future__ import annotations

import numpy as np

from jaxcollapse.theory.categorical import categorical_survival_probs


def wright_fisher_collision(g, n_draws, s0):
    """E[S_g] = 1 - (1 - 1/n)^g (1 - S_0): a Wright-Fisher row's collision probability after g refits."""
    g = np.asarray(g, dtype=float)
    n = np.asarray(n_draws, dtype=float)
    return 1.0 - (1.0 - 1.0 / n) ** g * (1.0 - np.asarray(s0, dtype=float))


def ngram_row_collisions(counts0) -> tuple[np.ndarray, np.ndarray]:
    """(n_c [C], S_0(c) [C]) of a real count table [C, V]: each row's draws and collision probability."""
    counts0 = np.asarray(counts0, dtype=np.float64)
    n = counts0.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s0 = np.where(n > 0, np.sum(counts0 ** 2, axis=-1) / np.maximum(n, 1) ** 2, 0.0)
    return n, s0


def ngram_expected_collision(g, counts0) -> np.ndarray:
    """E[sum_c (n_c / N) S_g(c)] [len(g)]: the `collision` metric of a held-context chain after g refits.

    Exact (linear in each row's law); rows with n_c = 0 carry no weight.
    """
    n, s0 = ngram_row_collisions(counts0)
    used = n > 0
    share = n[used] / n[used].sum()
    g = np.atleast_1d(np.asarray(g, dtype=float))
    rows = wright_fisher_collision(g[:, None], n[used][None], s0[used][None])  # [len(g), rows]
    return rows @ share


def ngram_row_survival_probs(g, n_draws: int, p0) -> np.ndarray:
    """[len(g), V] probability that each token of a held-context row (real frequencies p0, n draws)
    still has count > 0 at generation g (g = 0: the real fit, alive iff p0 > 0)."""
    g = np.atleast_1d(np.asarray(g, dtype=int))
    p0 = np.asarray(p0, dtype=float)
    out = np.empty((len(g), len(p0)))
    later = g >= 1
    out[~later] = (p0 > 0).astype(float)
    if later.any():
        out[later] = categorical_survival_probs(g[later] - 1, int(n_draws), p0)
    return out
