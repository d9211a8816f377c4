"""The closed forms themselves, against scipy and against their own defining sums."""
import numpy as np
import pytest
from scipy import stats

from jaxcollapse import theory


@pytest.mark.parametrize("m", [2, 5, 100, 1000])
def test_c_m_is_the_mean_of_a_chi_over_its_scale(m):
    np.testing.assert_allclose(theory.c_m(m), stats.chi(m - 1).mean() / np.sqrt(m - 1), rtol=1e-12)


def test_expected_log_var_is_a_sum_of_log_chi2_means():
    m, sigma, g = 20, 1.7, 6
    per_fit = stats.chi2(m - 1).expect(np.log) - np.log(m - 1)
    np.testing.assert_allclose(theory.gaussian_expected_log_var(g, m, sigma, ddof=1),
                               np.log(sigma**2) + (g + 1) * per_fit, rtol=1e-7)


def test_iterated_g_within_its_bounds():
    assert theory.iterated_g(1) == 1.0
    np.testing.assert_allclose(theory.iterated_g(2), 1 - np.exp(-1))
    for k in range(1, 200):
        assert 1 / k <= theory.iterated_g(k) <= 3 / k


def test_w2_closed_form_grows_for_unbiased_and_saturates_for_mle():
    g = np.arange(0, 5000, 500)
    unbiased = theory.gaussian_expected_w2_squared(g, 10, 1.0, ddof=1)
    assert np.all(np.diff(unbiased) > 0) and unbiased[-1] > 100
    mle = theory.gaussian_expected_w2_squared(g, 10, 1.0, ddof=0)
    np.testing.assert_allclose(mle[-1], 2.0, rtol=1e-6)  # mean error -> sigma^2, sigma -> 0


def test_accumulate_bound_below_basel_limit():
    bound = theory.mvn_accumulate_mean_sq_error_bound(np.arange(1000), 10, 3.0)
    assert np.all(np.diff(bound) > 0) and bound[-1] < np.pi**2 / 6 * 3.0 / 10


def test_det_ratio_matches_wishart_moment_in_one_dimension():
    np.testing.assert_allclose(theory.mvn_expected_det_ratio(4, 10, 1), (9 / 10) ** 5)


def test_categorical_survival_law_edges_and_a_numpy_chain():
    probs = np.array([0.05, 0.15, 0.8])
    m = 20
    # generation 0: a state is present unless none of the m real draws hit it
    np.testing.assert_allclose(theory.categorical_survival_probs(0, m, probs), 1 - (1 - probs) ** m, rtol=1e-12)
    # long run: survival -> fixation probability p_0(s) (ORACLES section 3)
    np.testing.assert_allclose(theory.categorical_survival_probs(5000, m, probs), probs, atol=1e-9)
    # against a plain NumPy multinomial chain (200,000 chains, 4 standard errors)
    rng = np.random.default_rng(0)
    counts = rng.multinomial(m, probs, size=200_000)
    alive = {0: counts > 0}
    for g in range(1, 6):
        counts = _multinomial_rows(rng, counts, m)
        alive[g] = counts > 0
    for g, a in alive.items():
        expected = theory.categorical_survival_probs(g, m, probs)
        se = np.sqrt(expected * (1 - expected) / len(a))  # binomial standard error (the sample's can be 0)
        assert np.all(np.abs(a.mean(0) - expected) < 4 * se)


def _multinomial_rows(rng, counts, m):
    """One multinomial draw of m per row, row probabilities counts / m (vectorised by conditional binomials)."""
    out = np.zeros_like(counts)
    left = np.full(len(counts), m)
    rest = np.full(len(counts), m)  # count mass of the states not drawn yet
    for s in range(counts.shape[1] - 1):
        p = np.divide(counts[:, s], rest, out=np.zeros(len(counts)), where=rest > 0)
        out[:, s] = rng.binomial(left, np.clip(p, 0.0, 1.0))
        left -= out[:, s]
        rest -= counts[:, s]
    out[:, -1] = left
    return out
