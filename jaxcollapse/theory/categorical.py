"""Closed forms of shared/ORACLES.md section 3: discrete distributions refitted by their frequencies (the dice),
and the survival laws of Bernoulli and Poisson chains. Generation g is the (g + 1)-th fit."""
from __future__ import annotations

import math

import numpy as np


def categorical_fixation_probs(probs):
    """The empirical-frequency chain ends in a point mass on s with probability p_0(s)."""
    return np.asarray(probs, dtype=float)


def categorical_expected_probs(g, probs):
    """E[p_g(s)] = p_0(s) at every generation (a martingale)."""
    return np.broadcast_to(np.asarray(probs, dtype=float), np.shape(g) + np.shape(probs))


def categorical_survival_probs(g, n_samples, probs):
    """Pr(state s still has probability > 0 at generation g), exactly, for the replace chain.

    The count of one state in a sample of n from a categorical is Binomial(n, p(s)), and the
    refit sets p(s) = count / n: the count alone is a neutral Wright-Fisher chain on {0..n}
    (count_0 ~ Binomial(n, p_0(s)), count_g ~ Binomial(n, count_{g-1} / n)), so its law is a
    vector propagated by the (n+1) x (n+1) binomial transition matrix. Returns [len(g), n_states]
    (or [n_states] for a scalar g). As g grows it tends to p_0(s), the fixation probability.
    Cost O(n^2 * max(g)): fine for n up to a few thousand.
    """
    probs = np.asarray(probs, dtype=float)
    gens = np.atleast_1d(np.asarray(g)).astype(int)
    if np.any(gens < 0):
        raise ValueError(f"g must be >= 0, got {g}")
    n = int(n_samples)
    k = np.arange(n + 1)
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in k])

    def binomial_rows(q):  # [len(q), n + 1] pmf of Binomial(n, q) for each q, with q in {0, 1} exact
        q = np.asarray(q, dtype=float)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = log_choose + k * np.log(q) + (n - k) * np.log1p(-q)
        pmf = np.exp(np.where(np.isnan(logp), -np.inf, logp))
        pmf[q[:, 0] == 0.0] = (k == 0)
        pmf[q[:, 0] == 1.0] = (k == n)
        return pmf

    transition = binomial_rows(k / n)                 # [n + 1, n + 1]: from count a to count b
    law = binomial_rows(probs)                        # generation 0: [n_states, n + 1]
    out = np.empty((gens.size, probs.size))
    order = np.argsort(gens)
    done = 0
    for i in order:
        for _ in range(gens[i] - done):
            law = law @ transition
        done = gens[i]
        out[i] = 1.0 - law[:, 0]
    return out if np.ndim(g) else out[0]


def categorical_expected_support(g, n_samples, probs):
    """E[number of states with probability > 0 at generation g] (replace): the survival probabilities summed."""
    return np.sum(categorical_survival_probs(g, n_samples, probs), axis=-1)


def iterated_g(k):
    """g_k = g applied k times to 1, with g(x) = 1 - e^(-x): g_1 = 1, g_2 = 0.632, 1/k <= g_k <= 3/k."""
    value = 1.0
    for _ in range(int(k) - 1):
        value = 1.0 - np.exp(-value)
    return value


def bernoulli_survival_bounds(k, n_samples, p0):
    """Bounds on Pr(P_k != 0) after k refits of a Bernoulli(p0) on n samples (Suresh et al. 2024)."""
    gk = iterated_g(k)
    decay = np.exp(-n_samples * p0 * gk)
    return 1.0 - decay, 1.0 - (1.0 - 3.0 * n_samples * p0**2 - 3.0 * k * p0) * decay


def poisson_survival(k, n_samples, rate0):
    """Pr(Lambda_k != 0) = 1 - e^(-n rate0 g_k), exactly, Poisson refitted by its sample mean."""
    return 1.0 - np.exp(-n_samples * rate0 * iterated_g(k))


def expected_appearances(prob, n_samples):
    """A state with probability q is expected n q times in n draws (< 1 when q < 1/n)."""
    return n_samples * np.asarray(prob, dtype=float)
