"""LinearRegression against the closed forms of theory/regression.py (ORACLES.md sections 4 and 9),
scikit-learn's Ridge, and its bad input. Tolerances: Monte-Carlo standard errors of >= 10,000 chains."""
import jax
import numpy as np
import pytest
from conftest import Z_MAX, z_score

import jaxcollapse as jc
from jaxcollapse import theory
from jaxcollapse.study.knowledge import knowledge_for

COV = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.0], [0.0, 0.0, 0.5]])   # not I: Sigma enters the two metrics differently
T, D, G = 12, 3, 6


def ratio_z(numerator, denominator, expected):
    """z of mean(numerator) / mean(denominator) (the same chains) by the delta method."""
    a, b = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    r = a.mean() / b.mean()
    var = (a.var(ddof=1) - 2 * r * np.cov(a, b)[0, 1] + r ** 2 * b.var(ddof=1)) / b.mean() ** 2
    return abs(r - expected) / np.sqrt(var / a.size)


def run(fam, source, regime, n_chains=10_000, n_generations=G, n_samples=T, **kw):
    return jc.simulate(jax.random.key(0), fam, source, n_chains=n_chains, n_generations=n_generations,
                       n_samples=n_samples, regime=regime, **kw)


@pytest.fixture(scope="module")
def fixed_replace():
    fam = jc.LinearRegression(dim=D, noise_std=1.0)
    return run(fam, fam.make_params(w=[1.0, -1.0, 0.5], cov=COV), jc.replace(), snapshot_at=[0, G])


# ---------------------------------------------------------------- oracles
def test_fixed_design_replace_grows_linearly_with_the_fits(fixed_replace):
    """E||w_g - w*||^2_Sigma = (g + 1) sigma^2 d / (T - d - 1) (Gerstgrasser et al.; generation g is fit g + 1),
    and E||w_g - w*||^2 the same with tr(Sigma^-1) for d."""
    g = np.arange(G + 1)
    risk = theory.ols_replace_expected_error(g, T, D)
    error = theory.ols_replace_expected_error(g, T, D, per_fit=np.trace(np.linalg.inv(COV)))
    assert np.all(z_score(fixed_replace.metrics["excess_risk"], risk) < Z_MAX)
    assert np.all(z_score(fixed_replace.metrics["param_error"], error) < Z_MAX)
    assert not fixed_replace.failed.any()


def test_fixed_design_labels_the_same_covariates_every_generation(fixed_replace):
    (x, y) = fixed_replace.snapshots                      # [chain, snapshot, T, ...]
    np.testing.assert_array_equal(x[:, 0], x[:, 1])       # the chain's design, generation 0 and G
    assert not np.allclose(y[:, 0], y[:, 1])              # relabelled
    assert not np.allclose(x[0, 0], x[1, 0])              # each chain draws its own design


@pytest.mark.slow
def test_fixed_design_accumulate_follows_the_inverse_squares():
    """E R_g = sigma^2 d / (T - d - 1) sum_{k=1..g+1} 1/k^2, and E R_g / E R_0 -> pi^2/6 (Dey and Donoho)."""
    fam = jc.LinearRegression(dim=D, noise_std=1.0)
    res = run(fam, fam.make_params(w=[1.0, -1.0, 0.5], cov=COV), jc.accumulate(), n_generations=40)
    g = np.arange(41)
    risk = res.metrics["excess_risk"]
    assert np.all(z_score(risk, theory.ols_accumulate_expected_error(g, T, D)) < Z_MAX)
    ratio = theory.ols_accumulate_risk_ratio(g, T, D)
    np.testing.assert_allclose(ratio, np.cumsum(1.0 / np.arange(1, 42) ** 2))
    assert ratio[-1] < np.pi ** 2 / 6 < ratio[-1] + 1.0 / 41  # the tail sum_{k>41} 1/k^2 < 1/41
    assert all(ratio_z(risk[:, k], risk[:, 0], ratio[k]) < Z_MAX for k in (1, 5, 40))


@pytest.mark.slow
def test_random_design_replace_has_dohmatob_constant():
    """Dohmatob, Feng and Kempe (2024), OLS: sigma_r^2 d/(T - d - 1) + g sigma_0^2 d/(T_0 - d - 1), T_0 = T."""
    fam = jc.LinearRegression(dim=D, noise_std=1.5, design="random")
    res = run(fam, fam.make_params(w=[1.0, -1.0, 0.5], cov=COV, noise_std=0.5), jc.replace())
    g = np.arange(G + 1)
    expected = theory.dohmatob_ols_test_error(g, T, T, D, sigma=0.5, sigma0=1.5)
    np.testing.assert_allclose(expected, theory.ols_replace_expected_error(g, T, D, 1.5, real_noise_std=0.5))
    assert np.all(z_score(res.metrics["excess_risk"], expected) < Z_MAX)


@pytest.mark.slow
def test_random_design_accumulate_is_exact_and_below_pi_squared_over_six():
    fam = jc.LinearRegression(dim=D, noise_std=1.0, design="random")
    res = run(fam, fam.make_params(w=[1.0, -1.0, 0.5], cov=COV), jc.accumulate(), n_generations=20)
    g = np.arange(21)
    risk = res.metrics["excess_risk"]
    assert np.all(z_score(risk, theory.ols_accumulate_expected_error(g, T, D, design="random")) < Z_MAX)
    ratio = theory.ols_accumulate_risk_ratio(g, T, D, design="random")
    assert ratio_z(risk[:, 20], risk[:, 0], ratio[20]) < Z_MAX
    limit = theory.ols_accumulate_ratio_limit(T, D, "random")
    assert ratio[-1] < limit < np.pi ** 2 / 6
    assert theory.ols_accumulate_ratio_limit(10**6, D, "random") == pytest.approx(np.pi ** 2 / 6, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("n_samples", [200, 2000])
def test_strong_model_collapse_floor(n_samples):
    """A share p of labels from w* + Delta: E w_0 = w* + p Delta exactly, and the error tends to the floor
    p^2 ||Delta||^2_Sigma as T grows instead of to 0 (checked to first order in 1/T)."""
    fam = jc.LinearRegression(dim=2, noise_std=1.0)
    cov, shift, share = np.array([[1.0, 0.2], [0.2, 0.5]]), np.array([1.0, -0.5]), 0.2
    src = fam.make_params(w=[0.5, 0.5], cov=cov, synthetic_shift=shift, synthetic_share=share)
    res = run(fam, src, jc.replace(), n_generations=0, n_samples=n_samples)
    n_shifted = round(share * n_samples)
    w0 = res.params.w[:, 0]
    assert np.all(z_score(w0, theory.strong_collapse_expected_w([0.5, 0.5], shift, n_shifted, n_samples)) < Z_MAX)
    shift_sq = shift @ cov @ shift
    expected = theory.strong_collapse_expected_risk(n_samples, 2, n_shifted, shift_sq)
    assert z_score(res.metrics["excess_risk"][:, 0], expected) < Z_MAX
    assert expected > theory.strong_collapse_floor(share, shift_sq) > 0.0


@pytest.mark.slow
def test_gaussian_mean_accumulate_pathway():
    """Dey and Donoho's mean: E||mu_g - mu||^2 under accumulate, exactly, and its ratio tends to pi^2/6."""
    fam = jc.Gaussian(dim=1, ddof=1)
    m = 3  # small M, many chains: the exact law's shrinking E Sigma_k (not the naive tr Sigma / M sum 1/k^2) is tested
    res = run(fam, fam.make_params(mean=[0.0], cov=[[2.0]]), jc.accumulate(), n_chains=40_000,
              n_generations=30, n_samples=m, record=("mean",))
    assert not res.failed.any()
    sq_error = np.sum(np.asarray(res.metrics["mean"]) ** 2, axis=-1)
    g = np.arange(31)
    expected = theory.gaussian_accumulate_mean_sq_error(g, m, 2.0)
    assert np.all(z_score(sq_error, expected) < Z_MAX)
    assert ratio_z(sq_error[:, 30], sq_error[:, 0], expected[30] / expected[0]) < Z_MAX
    big = theory.gaussian_accumulate_mean_sq_error(10_000, 10**6) / theory.gaussian_accumulate_mean_sq_error(0, 10**6)
    assert big == pytest.approx(np.pi ** 2 / 6, rel=1e-3)


# ---------------------------------------------------------------- the engine's contract off the contract test's path
# (tests/test_family_contract.py runs the fixed design under keep_real: here the random design and the
# sufficient-statistics path of accumulate)
CONTRACT = dict(n_chains=3, n_generations=4, n_samples=6, regime=jc.accumulate(), snapshot_at=[0, 4])


@pytest.fixture(scope="module")
def random_accumulate():
    fam = jc.LinearRegression(dim=2, noise_std=0.5, design="random")
    src = fam.make_params(w=[1.0, -0.5], cov=[[1.0, 0.2], [0.2, 0.5]])
    return fam, src, jc.simulate(jax.random.key(3), fam, src, **CONTRACT)


def _same_bits(a, b):
    for left, right in zip(jax.tree_util.tree_leaves((a.params, a.metrics, a.info, a.snapshots)),
                           jax.tree_util.tree_leaves((b.params, b.metrics, b.info, b.snapshots))):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def test_random_design_accumulate_chunked_equals_one_piece(random_accumulate):
    fam, src, res = random_accumulate
    _same_bits(res, jc.simulate(jax.random.key(3), fam, src, chunk_size=3, **CONTRACT))


def test_random_design_accumulate_vmapped_equals_replayed_chains(random_accumulate):
    fam, src, res = random_accumulate
    assert not res.failed.any()
    for i in range(CONTRACT["n_chains"]):
        alone = jc.simulate(res.chain_key(i), fam, src, **{**CONTRACT, "n_chains": 1}).chain(0)
        for a, b in zip(jax.tree_util.tree_leaves((res.chain(i).params, res.chain(i).metrics)),
                        jax.tree_util.tree_leaves((alone.params, alone.metrics))):
            np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the fit against scikit-learn
@pytest.mark.parametrize("ridge", [0.0, 0.7])
def test_weighted_fit_equals_scikit_learn_ridge(ridge):
    from sklearn.linear_model import Ridge

    fam = jc.LinearRegression(dim=D, noise_std=1.0, ridge=ridge)
    x, y = fam.sample(jax.random.key(1), fam.make_params(w=[1.0, -1.0, 0.5], cov=COV), 30)
    w = np.random.default_rng(0).uniform(0.2, 2.0, 30)
    params, info = fam.fit(None, (x, y), w, None)
    reference = Ridge(alpha=ridge, fit_intercept=False, solver="cholesky").fit(
        np.asarray(x, np.float64), np.asarray(y, np.float64), sample_weight=w).coef_
    np.testing.assert_allclose(params.w, reference, rtol=1e-4, atol=1e-5)
    assert bool(info.finite)


def test_risk_ratio_is_over_the_mean_generation_zero_risk():
    fam = jc.LinearRegression(dim=2, noise_std=1.0)
    src = fam.make_params(w=[1.0, 0.0])
    w = np.array([[[1.0, 0.0], [2.0, 0.0]], [[1.0, 1.0], [1.0, 3.0]]])  # [chain, generation, d]
    out = knowledge_for(fam).derived_metrics(fam, {"run": {}, "source": {}}, src, {"w": w})["risk_ratio"]
    np.testing.assert_allclose(out, [[0.0, 2.0], [2.0, 18.0]])   # risks [[0, 1], [1, 9]] over mean(0, 1)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, name", [
    (dict(dim=2, noise_std=1.0, ridge=-0.1), "ridge"),
    (dict(dim=2, noise_std=-1.0), "noise_std"),
    (dict(dim=2, noise_std=1.0, design="mixed"), "design"),
    (dict(dim=0, noise_std=1.0), "dim"),
])
def test_bad_settings_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        jc.LinearRegression(**kwargs)


def test_bad_runs_and_sources_raise_before_compiling():
    fam = jc.LinearRegression(dim=3, noise_std=1.0)
    src = fam.make_params(w=[1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="n_samples must be >= dim"):
        jc.simulate(jax.random.key(0), fam, src, n_chains=2, n_generations=1, n_samples=2)
    with pytest.raises(ValueError, match="w must have shape"):
        fam.make_params(w=[1.0, 0.0])
    other = jc.LinearRegression(dim=2, noise_std=1.0).make_params(w=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"source w must have shape \(3,\)"):
        jc.simulate(jax.random.key(0), fam, other, n_chains=2, n_generations=1, n_samples=8)
    wide_cov = src._replace(cov=np.eye(2))
    with pytest.raises(ValueError, match=r"source cov must have shape \(3, 3\)"):
        jc.simulate(jax.random.key(0), fam, wide_cov, n_chains=2, n_generations=1, n_samples=8)
    with pytest.raises(ValueError, match="synthetic_share"):
        fam.make_params(w=[1.0, 0.0, 0.0], synthetic_share=1.5)
    with pytest.raises(ValueError, match="parametric source"):
        jc.simulate(jax.random.key(0), fam, np.zeros((10, 3)), n_chains=2, n_generations=1, n_samples=8)


def test_family_numbers_are_single_and_a_given_design_has_n_samples_rows():
    with pytest.raises(ValueError, match="ridge must be one number"):
        jc.LinearRegression(dim=2, noise_std=1.0, ridge=np.array([0.0, 0.1]))
    with pytest.raises(ValueError, match="noise_std must be one number"):
        jc.LinearRegression(dim=2, noise_std=[1.0, 2.0])
    fam = jc.LinearRegression(dim=3, noise_std=1.0)
    short = fam.make_params(w=[1.0, 0.0, 0.0], design=np.random.default_rng(0).standard_normal((2, 3)))
    with pytest.raises(ValueError, match="source design must have n_samples = 8 rows"):  # rank 2 < d, cycled
        jc.simulate(jax.random.key(0), fam, short, n_chains=2, n_generations=1, n_samples=8)


def test_theory_refuses_sizes_where_the_ols_error_is_infinite():
    for bad in (4, 3):
        with pytest.raises(ValueError, match="n_samples must be > dim"):
            theory.ols_replace_expected_error(1, bad, 3)
        with pytest.raises(ValueError, match="n_samples must be > dim"):
            theory.ols_accumulate_expected_error(1, bad, 3)
    with pytest.raises(ValueError, match="design"):
        theory.ols_accumulate_expected_error(1, 10, 3, design="mixed")
