"""Gaussian chains followed to deep collapse in float32 (ORACLES.md sections 1-2, over long horizons).

The chains shrink far past float32's range (E log sigma^2 = -2200 at generation 10,000 with M = 10):
their log-scales must still match the closed forms, within z < 4 of the chains' own standard error,
with no chain failed and no value non-finite.
"""
import jax
import numpy as np
import pytest
from conftest import Z_MAX, z_score

import jaxcollapse as jc
from jaxcollapse import metrics, theory

N_CHAINS = 2_000


def _one_d(ddof, n_generations, seed):
    fam = jc.Gaussian(dim=1, ddof=ddof)
    src = fam.make_params(mean=[0.5], cov=[[4.0]])
    return jc.simulate(jax.random.key(seed), fam, src, n_chains=N_CHAINS, n_generations=n_generations,
                       n_samples=10, record=("log_var",))


def _assert_log_var_follows_theory(res, ddof, generations):
    log_var = np.asarray(res.metrics["log_var"])
    assert not res.failed.any() and np.all(np.isfinite(log_var))
    expected = theory.gaussian_expected_log_var(generations, 10, 2.0, ddof)
    assert np.all(z_score(log_var[:, generations], expected) < Z_MAX)
    return expected


@pytest.fixture(scope="module", params=[0, 1], ids=["ddof0", "ddof1"])
def one_d_1000(request):
    return request.param, _one_d(request.param, 1_000, seed=20 + request.param)


def test_1d_log_var_follows_theory_to_generation_1000(one_d_1000):
    ddof, res = one_d_1000
    expected = _assert_log_var_follows_theory(res, ddof, np.array([100, 1_000]))
    assert expected[-1] < -100  # far below where a float32 covariance matrix would have stalled (about -31)


@pytest.mark.slow
@pytest.mark.parametrize("ddof", [0, 1])
def test_1d_log_var_follows_theory_to_generation_10000(ddof):
    res = _one_d(ddof, 10_000, seed=30 + ddof)
    expected = _assert_log_var_follows_theory(res, ddof, np.array([100, 1_000, 10_000]))
    assert expected[-1] < -1_000  # sigma^2 of order e^-1150 (ddof 1) and e^-2200 (ddof 0)


def _ten_d(n_samples, n_generations, seed):
    dim = 10
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim))
    cov = a @ a.T / dim + np.eye(dim)
    fam = jc.Gaussian(dim=dim, ddof=0)
    src = fam.make_params(mean=np.ones(dim), cov=cov)
    res = jc.simulate(jax.random.key(seed), fam, src, n_chains=N_CHAINS, n_generations=n_generations,
                      n_samples=n_samples, record=("log_det_cov", "kl_to_source"))
    return res, np.linalg.slogdet(cov)[1]


def _assert_log_det_follows_theory(res, log_det0, n_samples, generations):
    log_det = np.asarray(res.metrics["log_det_cov"])
    assert not res.failed.any() and np.all(np.isfinite(log_det))
    assert not np.any(np.isnan(res.metrics["kl_to_source"]))  # +inf once past float32's largest number
    expected = theory.mvn_expected_log_det(generations, n_samples, 10, log_det0)
    assert np.all(z_score(log_det[:, generations], expected) < Z_MAX)


def test_10d_log_det_follows_theory_where_the_condition_number_explodes():
    # M = 20: cond(Sigma) grows about e^0.6 per generation, past 1/eps(float32) by generation 30
    res, log_det0 = _ten_d(20, 200, seed=40)
    _assert_log_det_follows_theory(res, log_det0, 20, np.array([50, 200]))


@pytest.mark.slow
def test_10d_log_det_follows_theory_to_generation_1000():
    res, log_det0 = _ten_d(100, 1_000, seed=41)
    _assert_log_det_follows_theory(res, log_det0, 100, np.array([400, 1_000]))


# ---------------------------------------------------------------- failures at the right generation
def test_log_det_of_a_singular_matrix_is_minus_inf_not_nan():
    singular = np.array([[1.0, 1.0], [1.0, 1.0]], np.float32)
    assert metrics.log_det_spd(singular) == -np.inf
    assert metrics.log_det_spd(np.zeros((1, 1), np.float32)) == -np.inf
    np.testing.assert_allclose(metrics.log_det_spd(np.diag([2.0, 3.0]).astype(np.float32)), np.log(6.0), rtol=1e-6)


@pytest.mark.parametrize("dim,n_samples", [(1, 1), (3, 3)], ids=["one-point", "n-equals-d"])
def test_a_degenerate_fit_is_flagged_at_its_generation_and_no_metric_is_nan(dim, n_samples):
    fam = jc.Gaussian(dim=dim, ddof=0)
    src = fam.make_params(mean=np.zeros(dim), cov=np.eye(dim))
    res = jc.simulate(jax.random.key(0), fam, src, n_chains=4, n_generations=3, n_samples=n_samples)
    finite = np.asarray(res.info.finite)
    assert not finite[:, 0].any()  # the generation-0 MLE of n <= d points is singular: flagged there
    assert res.failed.all()
    for name, values in res.metrics.items():
        assert not np.any(np.isnan(values)), name
    assert np.all(res.metrics["log_det_cov"] == -np.inf) and np.all(res.metrics["kl_to_source"] == np.inf)
    assert np.all(np.isfinite(res.metrics["w2_to_source"]))
    assert np.all(np.isfinite(res.params.mean)) and np.all(np.isfinite(res.params.cov))
