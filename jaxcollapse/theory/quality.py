"""Closed forms of quality-checked synthetic data (shared/ORACLES.md section 7), for tests and overlays.

Plain NumPy/SciPy, independent of the JAX engine:
    verified_bad_share          Feng et al. 2024: the bad share a verifier lets through
    curation_step, _k2          Ferbach et al. 2024: one step of K-wise curation on a finite set
    curation_recursion          that step iterated (the n -> infinity chain), with keep_real mixed in
    expected_reward             E_p[r], the reward curation raises
    sampler_probs               a Categorical's distribution after temperature, top_k, top_p
    zipf_probs, lost_mass       Dohmatob et al. 2024 ("A Tale of Tails"): mass unseen in T draws
    corrected_gaussian_moments  Gillman et al. 2024's setting: 1-D Gaussian chain with the
                                optimal-transport corrector toward the source, exact moments
    truncated_normal_var        the variance a top-q source-density filter keeps (n -> infinity)
    filter_top_categorical      exact E p_{t+1} after keeping the best n of m candidates (finite n, m)
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.special import gammaln
from scipy.stats import binom, norm

__all__ = ["corrected_gaussian_moments", "curation_recursion", "curation_step", "curation_step_k2",
           "expected_reward", "filter_top_categorical", "lost_mass", "sampler_probs", "truncated_normal_var",
           "verified_bad_share", "zipf_probs"]


# ---------------------------------------------------------------- verification
def verified_bad_share(eps, keep_good, keep_bad):
    """eps' = eps b / (eps b + (1 - eps) a): the bad share among points a verifier keeps."""
    eps, a, b = (np.asarray(v, dtype=float) for v in (eps, keep_good, keep_bad))
    return eps * b / (eps * b + (1.0 - eps) * a)


# ---------------------------------------------------------------- curation
def curation_step(probs, reward, k: int):
    """Exact E p_{t+1} after K-wise curation of p_t = probs: p_j E[k e^{r_j} / (e^{r_j} + sum_{i<k} e^{r(X_i)})].

    The expectation over the k - 1 other candidates X_i ~ p is a sum over their count vectors
    (multinomial weights), so it is exact for any k (cost: C(k + S - 2, S - 1) terms).
    """
    p = np.asarray(probs, dtype=float)
    p = p / p.sum()  # rounding off a probability vector grows k-fold per step when iterated: renormalise
    e = np.exp(np.asarray(reward, dtype=float) - np.max(reward))
    s = p.size
    if k == 1:
        return p.copy()
    expect = np.zeros(s)
    log_p = np.log(np.where(p > 0, p, 1.0))
    for combo in itertools.combinations_with_replacement(range(s), k - 1):
        counts = np.bincount(combo, minlength=s)
        if np.any(counts[p == 0] > 0):
            continue
        log_weight = gammaln(k) - np.sum(gammaln(counts + 1)) + np.sum(counts * log_p)
        others = np.sum(counts * e)
        expect += math.exp(log_weight) * k * e / (e + others)
    return p * expect


def curation_step_k2(probs, reward):
    """K = 2 in closed form: p_{t+1}(j) = 2 p_j sum_i p_i e^{r_j} / (e^{r_j} + e^{r_i})."""
    p = np.asarray(probs, dtype=float)
    e = np.exp(np.asarray(reward, dtype=float) - np.max(reward))
    return 2.0 * p * np.sum(p[None, :] * e[:, None] / (e[:, None] + e[None, :]), axis=1)


def expected_reward(probs, reward):
    """E_p[r] over the last axis of probs."""
    return np.sum(np.asarray(probs, dtype=float) * np.asarray(reward, dtype=float), axis=-1)


def curation_recursion(probs0, reward, k: int, n_generations: int, real=None, fraction=0.0):
    """p_0, ..., p_G of p_{t+1} = fraction real + (1 - fraction) curation_step(p_t): the chain as n -> infinity.

    real: the real data's distribution (default probs0) mixed in with keep_real(fraction).
    """
    p = np.asarray(probs0, dtype=float)
    real = p if real is None else np.asarray(real, dtype=float)
    out = [p]
    for _ in range(n_generations):
        p = fraction * real + (1.0 - fraction) * curation_step(p, reward, k)
        out.append(p)
    return np.stack(out)


# ---------------------------------------------------------------- sampler settings, tails
def sampler_probs(probs, temperature=1.0, top_k=0, top_p=1.0):
    """p^(1/T) renormalised, then the top_k most likely states (0: all; ties to the lower state), then the
    fewest most likely states whose mass reaches top_p; renormalised. A plain NumPy reference."""
    p = np.asarray(probs, dtype=float)
    q = np.where(p > 0, p, 0.0) ** (1.0 / temperature)
    q = q / q.sum()
    order = sorted(range(p.size), key=lambda i: (-q[i], i))
    if top_k:
        q[order[top_k:]] = 0.0
        q = q / q.sum()
    if top_p < 1.0:
        mass = 0.0
        for i in order:
            if mass >= top_p:
                q[i] = 0.0
            mass += q[i] if mass < top_p else 0.0
        q = q / q.sum()
    return q


def zipf_probs(n_states: int, beta: float):
    """p_i proportional to i^-beta, i = 1..n_states."""
    p = np.arange(1, n_states + 1, dtype=float) ** -float(beta)
    return p / p.sum()


def lost_mass(probs, q, n_draws):
    """E sum_i p_i 1{state i unseen in n_draws draws from q} = sum_i p_i (1 - q_i)^T (Dohmatob et al. 2024)."""
    p, q = np.asarray(probs, dtype=float), np.asarray(q, dtype=float)
    t = np.asarray(n_draws, dtype=float)[..., None]
    return np.sum(p * (1.0 - q) ** t, axis=-1)


# ---------------------------------------------------------------- correction (Gaussian)
def corrected_gaussian_moments(g, n_samples, strength, sigma=1.0, ddof=1, lam=1.0):
    """E sigma_g, E sigma_g^2 and E (mu_g - mu)^2 of a 1-D Gaussian chain whose samples are corrected
    by x + s (T(x) - x), T the optimal-transport map from the generating N(mu_t, lam sigma_t^2) onto
    the source N(mu, sigma^2).

    Corrected points are N((1 - s) mu_t + s mu, c_t^2) with c_t = (1 - s) sqrt(lam) sigma_t + s sigma, so
    the fit gives sigma_{t+1} = c_t sqrt(chi2_{M-1} / (M - ddof)) and mu_{t+1} - mu = (1 - s)(mu_t - mu)
    + c_t z / sqrt(M): linear recursions in E sigma, E sigma^2, E (mu - mu)^2, exact for every g.
    s = 0 is the plain chain (E sigma_g = sigma k1^(g+1)); s > 0 has the fixed point
    E sigma = k1 s sigma / (1 - k1 (1 - s) sqrt(lam)).
    """
    m = float(n_samples)
    k2 = (m - 1.0) / (m - ddof)                                             # E[chi2/(M - ddof)]
    k1 = math.exp(gammaln(m / 2.0) - gammaln((m - 1.0) / 2.0)) * math.sqrt(2.0 / (m - ddof))  # E sqrt(.)
    s, root = float(strength), math.sqrt(lam)
    e1, e2, mse = k1 * sigma, k2 * sigma**2, sigma**2 / m                  # generation 0: fit on real data
    gens = np.atleast_1d(np.asarray(g, dtype=int))
    out = np.zeros((3, int(gens.max()) + 1))
    for t in range(int(gens.max()) + 1):
        out[:, t] = e1, e2, mse
        c1 = (1.0 - s) * root * e1 + s * sigma                              # E c_t
        c2 = (1.0 - s) ** 2 * lam * e2 + 2.0 * s * (1.0 - s) * root * sigma * e1 + s**2 * sigma**2  # E c_t^2
        e1, e2, mse = k1 * c1, k2 * c2, (1.0 - s) ** 2 * mse + c2 / m
    values = out[:, gens]
    return {"std": values[0], "var": values[1], "mean_sq_error": values[2]}


def truncated_normal_var(keep, sigma=1.0):
    """Variance of N(0, sigma^2) kept within its central share `keep`: sigma^2 (1 - 2 z phi(z) / keep)."""
    q = np.asarray(keep, dtype=float)
    z = norm.ppf((1.0 + q) / 2.0)
    return sigma**2 * (1.0 - 2.0 * z * norm.pdf(z) / q)


# ---------------------------------------------------------------- filters
def filter_top_categorical(probs, score, n: int, m: int):
    """Exact E p_{t+1}(j) when a Categorical p_t = probs draws m candidates and the best n by a
    per-state score are kept (every state p_t gives mass must have a finite score).

    States are taken in decreasing score; with S ~ Binom(m, mass ranked above) candidates ahead,
    a state group's count C | S ~ Binom(m - S, p_group / (1 - mass above)) and it keeps
    min(C, (n - S)^+). Tied states share their group's kept count in proportion to p (the earlier
    candidates win a tie, a uniformly random subset of the group). E p_{t+1} = E[kept] / n.
    """
    p = np.asarray(probs, dtype=float)
    score = np.asarray(score, dtype=float)
    live = p > 0
    if not np.all(np.isfinite(score[live])):
        raise ValueError("filter_top_categorical needs a finite score for every state of positive probability")
    out = np.zeros_like(p)
    above = 0.0
    s = np.arange(m + 1)
    for value in sorted(set(score[live]), reverse=True):
        group = live & (score == value)
        mass = p[group].sum()
        p_ahead = binom.pmf(s, m, min(above, 1.0))                        # P(S = s)
        rest = 1.0 - above
        share = min(mass / rest, 1.0) if rest > 0 else 0.0
        kept = 0.0
        for ahead in np.nonzero(p_ahead > 1e-300)[0]:
            c = np.arange(m - ahead + 1)
            kept += p_ahead[ahead] * np.sum(binom.pmf(c, m - ahead, share) * np.minimum(c, max(n - ahead, 0)))
        out[group] = kept * p[group] / mass / n
        above += mass
    return out
