"""The dice chain against ORACLES.md section 3: fixation on s with probability p_0(s), E p_g = p_0."""
import jax
import numpy as np
import pytest
from conftest import Z_MAX, z_score

import jaxcollapse as jc
from jaxcollapse import theory

N_CHAINS = 10_000


@pytest.fixture(scope="module")
def absorbed():
    probs = np.array([0.5, 0.3, 0.2])
    fam = jc.Categorical(3)
    res = jc.simulate(jax.random.key(7), fam, fam.make_params(probs), n_chains=N_CHAINS,
                      n_generations=200, n_samples=10)
    return probs, res


def test_chains_end_in_a_point_mass_on_s_with_probability_p0(absorbed):
    probs, res = absorbed
    final = res.params.probs[:, -1]
    fixed = res.metrics["support_size"][:, -1] == 1
    assert fixed.mean() > 0.999  # absorption is certain; 200 generations of M=10 suffice in practice
    on_state = (final[fixed] == 1.0).astype(float)  # [chains, states] indicator of the absorbing state
    assert np.all(z_score(on_state, theory.categorical_fixation_probs(probs)) < Z_MAX)


def test_expected_probs_stay_at_source(absorbed):
    probs, res = absorbed
    for g in (0, 5, 50):
        assert np.all(z_score(res.params.probs[:, g], theory.categorical_expected_probs(g, probs)) < Z_MAX)


def test_state_survival_and_support_size_match_the_wright_fisher_law(absorbed):
    probs, res = absorbed
    gens = [1, 3, 10, 30]
    survival = theory.categorical_survival_probs(gens, 10, probs)          # [gens, states]
    alive = (res.params.probs[:, gens] > 0).astype(float)                  # [chains, gens, states]
    assert np.all(z_score(alive, survival) < Z_MAX)
    support = res.metrics["support_size"][:, gens]
    assert np.all(z_score(support, theory.categorical_expected_support(gens, 10, probs)) < Z_MAX)


def test_support_only_shrinks_and_metrics_are_consistent(absorbed):
    _, res = absorbed
    support = res.metrics["support_size"]
    assert np.all(np.diff(support, axis=1) <= 0)  # under replace a lost face never returns
    p = res.params.probs.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)
    np.testing.assert_allclose(res.metrics["entropy"], entropy, atol=1e-5)


def test_dice_expected_frequencies():
    probs = np.full(6, 1 / 6)
    fam = jc.Categorical(6)
    res = jc.simulate(jax.random.key(8), fam, fam.make_params(probs), n_chains=N_CHAINS,
                      n_generations=20, n_samples=100)
    for g in (0, 20):
        assert np.all(z_score(res.params.probs[:, g], probs) < Z_MAX)
    tv = res.metrics["tv_to_source"]
    assert np.all(np.median(tv[:, -1]) > np.median(tv[:, 0]))  # the dice drift away from fair


def test_rare_state_survival_within_suresh_bounds():
    n, p0 = 100, 0.01
    fam = jc.Categorical(2)
    res = jc.simulate(jax.random.key(9), fam, fam.make_params([1 - p0, p0]), n_chains=N_CHAINS,
                      n_generations=9, n_samples=n)
    for g in (0, 4, 9):
        k = g + 1  # generation g is the (g + 1)-th fit
        alive = (res.params.probs[:, g, 1] > 0).astype(float)
        low, high = theory.bernoulli_survival_bounds(k, n, p0)
        se = alive.std(ddof=1) / np.sqrt(N_CHAINS)
        assert low - Z_MAX * se <= alive.mean() <= high + Z_MAX * se
