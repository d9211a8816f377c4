"""Closed forms of shared/ORACLES.md section 9 for the Gaussian KDE chain (replace), and the two-moons
source's variance. Indexing as theory/gaussian.py: generation g = 0 is the KDE of n real points, generation g
the KDE of n points drawn from generation g - 1. Plain NumPy; jaxcollapse.theory re-exports these names.
"""
from __future__ import annotations

import numpy as np


def kde_expected_points_variance(g, n_samples, bandwidth, source_trace_cov, dim=1):
    """E tr S^2_g of a Gaussian KDE chain under replace (S^2: the n points' covariance, ddof 0).

    n points drawn from a KDE have covariance S^2 + h^2 I, and their ddof-0 covariance has
    expectation (1 - 1/n) of it: E S^2_{g+1} = (1 - 1/n)(E S^2_g + h^2) per coordinate, from
    E S^2_0 = (1 - 1/n) Sigma. So E tr S^2_g = a^{g+1} tr Sigma + d h^2 a (1 - a^g)/(1 - a), a = 1 - 1/n,
    rising (h large) or falling to (n - 1) d h^2: the variance does not vanish, unlike maximum likelihood.
    """
    if bandwidth < 0:
        raise ValueError(f"bandwidth must be >= 0, got {bandwidth}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    gens = np.asarray(g, dtype=float)
    if np.any(gens < 0):
        raise ValueError(f"g must hold generations >= 0, got {g}")
    a = 1.0 - 1.0 / n_samples
    return a ** (gens + 1) * source_trace_cov + dim * bandwidth ** 2 * a * (1.0 - a ** gens) / (1.0 - a)


def kde_variance_limit(n_samples, bandwidth, dim=1):
    """lim E tr S^2_g = (n - 1) d h^2."""
    return (n_samples - 1.0) * dim * bandwidth ** 2


def two_moons_trace_cov(noise):
    """tr Cov of the two-moons law (KDE's MoonsParams): a half circle (cos t, sin t) and its shifted
    mirror (1 - cos t, 1/2 - sin t), t ~ U(0, pi), each with probability 1/2, plus N(0, noise^2 I)."""
    var_x = 0.5 + 0.25                                            # within (1/2) + between the halves (1/4)
    var_y = (0.5 - 4 / np.pi ** 2) + 0.25 * (4 / np.pi - 0.5) ** 2
    return var_x + var_y + 2 * noise ** 2
