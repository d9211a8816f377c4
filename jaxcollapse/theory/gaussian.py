"""Closed forms of shared/ORACLES.md sections 1-2: one Gaussian and d-dimensional Gaussians refitted on their samples.

Notation: M = n_samples per generation; generation g is the (g + 1)-th fit (g = 0 is the fit
on real data), so t = g + 1 fits have happened; r = (M - 1) / M;
c_M = sqrt(2 / (M - 1)) Gamma(M / 2) / Gamma((M - 1) / 2) = E[sqrt(chi2_{M-1})] / sqrt(M - 1).
Plain NumPy/SciPy: these are references, independent of the JAX engine.
"""
from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln, polygamma


def _fits(g):
    return np.asarray(g, dtype=float) + 1.0


def c_m(n_samples):
    """E[sqrt(chi2_{M-1})] / sqrt(M - 1)."""
    m = np.asarray(n_samples, dtype=float)
    return np.sqrt(2.0 / (m - 1.0)) * np.exp(gammaln(m / 2.0) - gammaln((m - 1.0) / 2.0))


def _check_ddof(ddof):
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")


# ---------------------------------------------------------------- 1. one Gaussian, replace
def gaussian_expected_var(g, n_samples, sigma=1.0, ddof=1):
    """E[sigma_g^2]: sigma^2 (a martingale) for ddof=1, sigma^2 r^(g+1) for ddof=0."""
    _check_ddof(ddof)
    r = (n_samples - 1.0) / n_samples
    return sigma**2 * (np.ones_like(_fits(g)) if ddof == 1 else r ** _fits(g))


def gaussian_expected_var_squared(g, n_samples, sigma=1.0):
    """E[sigma_g^4] = sigma^4 ((M+1)/(M-1))^(g+1), ddof=1 (heavy-tailed; shown, rarely testable)."""
    return sigma**4 * ((n_samples + 1.0) / (n_samples - 1.0)) ** _fits(g)


def gaussian_expected_std(g, n_samples, sigma=1.0, ddof=1):
    """E[sigma_g] = sigma c_M^(g+1) (ddof=1) or sigma (c_M sqrt(r))^(g+1) (ddof=0)."""
    _check_ddof(ddof)
    factor = c_m(n_samples) * (1.0 if ddof == 1 else np.sqrt((n_samples - 1.0) / n_samples))
    return sigma * factor ** _fits(g)


def gaussian_expected_log_var(g, n_samples, sigma=1.0, ddof=1):
    """E[log sigma_g^2] = log sigma^2 + (g+1)[digamma((M-1)/2) + log(2/(M-1))] (ddof=1; log(2/M) for ddof=0)."""
    _check_ddof(ddof)
    divisor = n_samples - 1.0 if ddof == 1 else float(n_samples)
    per_fit = digamma((n_samples - 1.0) / 2.0) + np.log(2.0 / divisor)
    return np.log(sigma**2) + _fits(g) * per_fit


def gaussian_expected_mean_sq_error(g, n_samples, sigma=1.0, ddof=1):
    """E[(mu_g - mu)^2] = (g+1) sigma^2 / M (ddof=1, unbounded) or sigma^2 (1 - r^(g+1)) (ddof=0)."""
    _check_ddof(ddof)
    if ddof == 1:
        return _fits(g) * sigma**2 / n_samples
    r = (n_samples - 1.0) / n_samples
    return sigma**2 * (1.0 - r ** _fits(g))


def gaussian_expected_w2_squared(g, n_samples, sigma=1.0, ddof=1):
    """E[W2^2(N(mu_g, sigma_g^2), N(mu, sigma^2))] = E(mu_g - mu)^2 + E(sigma_g - sigma)^2."""
    mean_part = gaussian_expected_mean_sq_error(g, n_samples, sigma, ddof)
    std_part = gaussian_expected_var(g, n_samples, sigma, ddof) - 2.0 * sigma * gaussian_expected_std(
        g, n_samples, sigma, ddof) + sigma**2
    return mean_part + std_part


def gaussian_expected_cov_sampling_bias(g, lam, cov):
    """E[Sigma_g] = lam^g Sigma, unbiased covariance, samples drawn from N(mu, lam Sigma)."""
    return np.asarray(lam, dtype=float) ** np.asarray(g, dtype=float)[..., None, None] * np.asarray(cov, dtype=float)


# ---------------------------------------------------------------- 2. d dimensions, MLE
def mvn_expected_cov(g, n_samples, cov):
    """E[Sigma_g] = r^(g+1) Sigma_0 (MLE covariance, replace)."""
    r = (n_samples - 1.0) / n_samples
    return r ** _fits(g)[..., None, None] * np.asarray(cov, dtype=float)


def mvn_expected_det_ratio(g, n_samples, dim):
    """E[det Sigma_g] / det Sigma_0 = (prod_{j<d} (M-1-j)/M)^(g+1) (MLE, replace)."""
    per_fit = np.prod([(n_samples - 1.0 - j) / n_samples for j in range(dim)])
    return per_fit ** _fits(g)


def mvn_expected_log_det(g, n_samples, dim, log_det_source=0.0, ddof=0):
    """E[log det Sigma_g] = log det Sigma + (g+1) sum_{j=0..d-1} [digamma((M-1-j)/2) + log(2/(M-ddof))] (replace).

    Generation g is the (g+1)-th fit. Each fit is Sigma' = Sigma^1/2 W Sigma^1/2 / (M - ddof) with
    W ~ Wishart_d(M - 1, I) independent of the past, and det W = prod_{j<d} chi2_{M-1-j}
    (independent factors, Bartlett), with E log chi2_k = digamma(k/2) + log 2. Needs M > d.
    d = 1 is gaussian_expected_log_var.
    """
    _check_ddof(ddof)
    if n_samples <= dim:
        raise ValueError(f"n_samples must be > dim for a non-singular covariance, got n_samples={n_samples}, dim={dim}")
    j = np.arange(dim)
    per_fit = np.sum(digamma((n_samples - 1.0 - j) / 2.0) + np.log(2.0 / (n_samples - ddof)))
    return log_det_source + _fits(g) * per_fit


def mvn_log_det_variance(g, n_samples, dim):
    """Var[log det Sigma_g] = (g+1) sum_{j<d} trigamma((M-1-j)/2) (replace; the same for ddof 0 and 1)."""
    j = np.arange(dim)
    return _fits(g) * np.sum(polygamma(1, (n_samples - 1.0 - j) / 2.0))


def mvn_expected_mean_sq_error(g, n_samples, trace_cov):
    """E||mu_g - mu_0||^2 = tr(Sigma_0) (1 - r^(g+1)) (MLE, replace)."""
    r = (n_samples - 1.0) / n_samples
    return trace_cov * (1.0 - r ** _fits(g))


def mvn_accumulate_mean_sq_error_bound(g, n_samples, trace_cov):
    """Accumulate: E||mu_g - mu_0||^2 <= tr(Sigma_0)/M sum_{k=1..g+1} 1/k^2 < (pi^2/6) tr(Sigma_0)/M."""
    fits = np.atleast_1d(_fits(g)).astype(int)
    partial = np.cumsum(1.0 / np.arange(1, fits.max() + 1) ** 2)
    out = trace_cov / n_samples * partial[fits - 1]
    return out if np.ndim(g) else out[0]


def gaussian_std_tail_bound(k, n_samples, sigma0, eps):
    """Pr(sigma_k > eps) <= (sigma_0 / eps) exp(-k / (4n - 1)), ddof=1."""
    return sigma0 / eps * np.exp(-k / (4.0 * n_samples - 1.0))
