"""Closed forms of shared/ORACLES.md sections 4 and 9: linear regression refitted on its own labels,
Dey and Donoho's pi^2/6 pathway (OLS and the Gaussian mean), Strong Model Collapse (the KDE's are
in theory/kde.py). Plain NumPy: references, independent of the JAX engine; jaxcollapse.theory re-exports them.

Indexing as in the library and theory/gaussian.py: generation g = 0 is the fit on real data, generation g
the fit after g rounds on generated data, so generation g is the (g + 1)-th fit. In the papers'
notation (n fits, n = g + 1):

    OLS on T rows, covariates x ~ N(0, Sigma) in d dimensions, T >= d + 2, real labels with noise
    sigma_r (the source's noise_std), generated labels with noise sigma (the family's noise_std).
    With A = X^T X, every fit adds an independent error: generation k's fit moves w by
    A_k^-1 X_k^T E_k (replace) or S_k^-1 X_k^T E_k, S_k = sum_{j<=k} A_j (accumulate: the pooled OLS
    equals w_{k-1} + S_k^-1 X_k^T E_k exactly), with E_k the labels' noise. So

    excess risk E||w_g - w*||^2_Sigma = sum_{k=0..g} sigma_k^2 c_k,  sigma_0 = sigma_r, sigma_k = sigma,
      replace (fixed or random design):  c_k = d / (T - d - 1)     (E (X^T X)^-1 = Sigma^-1 / (T - d - 1))
      accumulate, fixed design:          c_k = d / ((T - d - 1) (k + 1)^2)   (S_k = (k + 1) A)
      accumulate, random design:         c_k = d / ((k + 1) ((k + 1) T - d - 1))
                                          (the k + 1 blocks of S_k are exchangeable: E S^-1 A_k S^-1 = E S^-1 / (k + 1))
    and E||w_g - w*||^2 the same with d replaced by tr(Sigma^-1) (`per_fit`).

    Replace: (sigma_r^2 + g sigma^2) d / (T - d - 1), linear in g: Gerstgrasser et al.'s
    n sigma^2 d / (T - d - 1) with n = g + 1 fits, and Dohmatob, Feng and Kempe's (2024) exact OLS
    formula sigma^2 d / (T - d - 1) + n sigma_0^2 d / (T_0 - d - 1) with n = g generator fits
    (T_0 = T, sigma = sigma_r; each chain here refits with the same T).
    Accumulate, fixed design: sigma^2 d / (T - d - 1) sum_{k=1..g+1} 1/k^2 < (pi^2/6) sigma^2 d / (T - d - 1).
"""
from __future__ import annotations

import numpy as np

DESIGNS = ("fixed", "random")


def _check_ols(n_samples, dim):
    if n_samples <= dim + 1:
        raise ValueError(f"n_samples must be > dim + 1 = {dim + 1} for the OLS error to be finite "
                         f"(E (X^T X)^-1 = Sigma^-1 / (T - d - 1)), got {n_samples}")


def _per_fit(dim, per_fit):
    return float(dim) if per_fit is None else float(per_fit)


def _generations(g) -> np.ndarray:
    gens = np.asarray(g, dtype=float)
    if np.any(gens < 0) or np.any(gens != np.round(gens)):
        raise ValueError(f"g must hold generations (integers >= 0), got {g}")
    return gens


def _noise(noise_std, real_noise_std):
    real = noise_std if real_noise_std is None else real_noise_std
    if noise_std < 0 or real < 0:
        raise ValueError(f"noise_std and real_noise_std must be >= 0, got {noise_std}, {real}")
    return float(noise_std) ** 2, float(real) ** 2


# ---------------------------------------------------------------- OLS chains
def ols_replace_expected_error(g, n_samples, dim, noise_std=1.0, real_noise_std=None, per_fit=None):
    """E||w_g - w*||^2_Sigma = (sigma_r^2 + g sigma^2) d / (T - d - 1), fixed or random design.

    per_fit: d (excess risk under Sigma, the default) or tr(Sigma^-1) (E||w_g - w*||^2).
    """
    _check_ols(n_samples, dim)
    var, real = _noise(noise_std, real_noise_std)
    return (real + _generations(g) * var) * _per_fit(dim, per_fit) / (n_samples - dim - 1.0)


def ols_accumulate_terms(n_fits, n_samples, dim, design="fixed", per_fit=None) -> np.ndarray:
    """c_k for k = 0..n_fits-1: what fit k's label noise (per unit variance) adds to the error."""
    _check_ols(n_samples, dim)
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    k = np.arange(n_fits, dtype=float)
    if design == "fixed":
        terms = 1.0 / ((n_samples - dim - 1.0) * (k + 1.0) ** 2)
    else:
        terms = 1.0 / ((k + 1.0) * ((k + 1.0) * n_samples - dim - 1.0))
    return _per_fit(dim, per_fit) * terms


def ols_accumulate_expected_error(g, n_samples, dim, noise_std=1.0, real_noise_std=None, design="fixed",
                                  per_fit=None):
    """E||w_g - w*||^2_Sigma under accumulate (pooled OLS on all data so far): sum_k sigma_k^2 c_k."""
    gens = _generations(g)
    var, real = _noise(noise_std, real_noise_std)
    terms = ols_accumulate_terms(int(np.max(gens, initial=0)) + 1, n_samples, dim, design, per_fit)
    sigma2 = np.full(terms.shape, var)
    sigma2[0] = real
    cumulative = np.cumsum(sigma2 * terms)
    return cumulative[gens.astype(int)]


def ols_accumulate_risk_ratio(g, n_samples, dim, design="fixed"):
    """E R_g / E R_0 under accumulate, one noise level: sum_{k<=g} c_k / c_0 (Dey and Donoho's pathway).

    Fixed design: sum_{k=1..g+1} 1/k^2, -> pi^2/6. Random design: below it, -> pi^2/6 as T -> infinity.
    """
    return ols_accumulate_expected_error(g, n_samples, dim, design=design) / ols_accumulate_terms(
        1, n_samples, dim, design)[0]


def ols_accumulate_ratio_limit(n_samples, dim, design="fixed", n_terms=1_000_000):
    """lim_{g -> infinity} E R_g / E R_0 under accumulate (pi^2/6 for the fixed design)."""
    if design == "fixed":
        _check_ols(n_samples, dim)
        return np.pi ** 2 / 6
    terms = ols_accumulate_terms(n_terms, n_samples, dim, design)
    tail = 1.0 / (n_samples * n_terms)  # sum_{k > n_terms} 1/(k^2 T) ~ 1/(n_terms T) (times c_0's d)
    return (np.sum(terms) + dim * tail) / terms[0]


def dohmatob_ols_test_error(n, t, t0, dim, sigma, sigma0):
    """Dohmatob, Feng and Kempe (2024), OLS: sigma^2 d / (T - d - 1) + n sigma_0^2 d / (T_0 - d - 1).

    Their downstream model is fitted on T rows with noise sigma after n generator fits on T_0 rows
    with noise sigma_0; here generation g with real noise sigma_r is that with n = g, T = T_0.
    """
    _check_ols(t, dim)
    _check_ols(t0, dim)
    return sigma ** 2 * dim / (t - dim - 1.0) + np.asarray(n, float) * sigma0 ** 2 * dim / (t0 - dim - 1.0)


# ---------------------------------------------------------------- Strong Model Collapse
def strong_collapse_expected_w(w, synthetic_shift, n_shifted, n_samples):
    """E[w_0] = w* + (n_shifted / T) Delta, exactly, for OLS on T rows of which n_shifted have labels
    from w* + Delta (iid Gaussian rows are exchangeable: E (X^T X)^-1 X_S^T X_S = |S| / T I)."""
    return np.asarray(w, float) + n_shifted / n_samples * np.asarray(synthetic_shift, float)


def strong_collapse_floor(share, shift_sq_norm):
    """lim_{T -> infinity} E||w_0 - w*||^2_Sigma = p^2 ||Delta||^2_Sigma: the floor more real data never removes."""
    return np.asarray(share, float) ** 2 * shift_sq_norm


def strong_collapse_expected_risk(n_samples, dim, n_shifted, shift_sq_norm, noise_std=1.0):
    """E||w_0 - w*||^2_Sigma for OLS on a mix, to first order in 1/T (an O(T^-2) remainder):

        p^2 ||Delta||^2_Sigma + sigma^2 d / (T - d - 1) + p (1 - p) (d + 1) ||Delta||^2_Sigma / T,

    p = n_shifted / T; the last term is the fluctuation of (X^T X)^-1 X_S^T X_S around p I
    (E||(x x^T - Sigma) u||^2 = (d + 1) ||u||^2 per row for x ~ N(0, I)). Derived here, not
    quoted from Dohmatob et al.'s "Strong Model Collapse"; their classical-regime limit is the floor.
    """
    _check_ols(n_samples, dim)
    p = n_shifted / n_samples
    return (strong_collapse_floor(p, shift_sq_norm) + noise_std ** 2 * dim / (n_samples - dim - 1.0)
            + p * (1.0 - p) * (dim + 1.0) * shift_sq_norm / n_samples)


# ---------------------------------------------------------------- Dey and Donoho: the Gaussian mean
def gaussian_accumulate_expected_var(g, n_samples, trace_cov=1.0, ddof=1):
    """E tr Sigma_g of a Gaussian refitted on all data so far (accumulate), exactly.

    Pooling a new batch of M points from N(mu_{g-1}, Sigma_{g-1}) adds (M - 1) Sigma_{g-1} of scatter
    and g/(g + 1) Sigma_{g-1} between the old mean and the batch's, so with s_g = E tr Sigma_g:
    s_g ((g + 1) M - ddof) = s_{g-1} ((g + 1) M - 1 - 1/(g + 1)),  s_0 = tr Sigma (M - 1)/(M - ddof).
    """
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
    gens = _generations(g)
    m = float(n_samples)
    out = [trace_cov * (m - 1.0) / (m - ddof)]
    for k in range(1, int(np.max(gens, initial=0)) + 1):
        out.append(out[-1] * ((k + 1) * m - 1.0 - 1.0 / (k + 1)) / ((k + 1) * m - ddof))
    return np.asarray(out)[gens.astype(int)]


def gaussian_accumulate_mean_sq_error(g, n_samples, trace_cov=1.0, ddof=1):
    """E||mu_g - mu||^2 under accumulate, exactly: sum_{k=0..g} s_{k-1} / (M (k + 1)^2), s_{-1} = tr Sigma.

    The pooled mean moves by (batch mean - mu_{k-1}) / (k + 1), whose variance is tr Sigma_{k-1} / M.
    With tr Sigma_k = tr Sigma it would be tr Sigma / M sum 1/k^2 (ORACLES.md section 2's bound);
    the ratio to generation 0 tends to pi^2/6 as M grows (Dey and Donoho 2024).
    """
    gens = _generations(g)
    top = int(np.max(gens, initial=0))
    s_prev = np.concatenate([[trace_cov], gaussian_accumulate_expected_var(np.arange(top), n_samples, trace_cov, ddof)])
    terms = s_prev / (n_samples * (np.arange(top + 1) + 1.0) ** 2)
    return np.cumsum(terms)[gens.astype(int)]
