"""The benchmark's vectorised NumPy EM (benchmarks/numpy_gmm.py) is the recurrence scikit-learn runs.

A speed ratio against it means something only if it does the same work: float64, chain by chain,
the same iteration counts and parameters as GaussianMixture from the same start, with chains of
different iteration counts in one batch (the active set at work). The check against scikit-learn is the
benchmark script's own and runs with the slow tests (pytest -m slow).
"""
import importlib.util
import pathlib
import warnings

import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "numpy_gmm.py"


@pytest.fixture(scope="module")
def numpy_gmm():
    spec = importlib.util.spec_from_file_location("numpy_gmm", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_vectorised_em_equals_scikit_learn_chain_by_chain(numpy_gmm):
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    n, tol, reg = 400, 1e-6, 1e-6
    # chains from one blob to two separated ones: EM needs different numbers of iterations
    shifts = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    x = rng.standard_normal((len(shifts), n, 2))
    x[:, n // 2:, 0] += shifts[:, None]
    xt = np.ascontiguousarray(x.transpose(0, 2, 1))
    start = numpy_gmm.m_step(xt, numpy_gmm.kmeans_responsibilities(rng, xt, 2, 10), reg)
    weights, means, covs, n_iter, converged = numpy_gmm.em(xt, *start, tol=tol, max_iter=1000, reg_covar=reg)
    assert len(set(n_iter.tolist())) > 3 and converged.all()
    for c in range(len(shifts)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # scikit-learn must converge too
            ref = GaussianMixture(2, tol=tol, max_iter=1000, reg_covar=reg, weights_init=start[0][c],
                                  means_init=start[1][c], precisions_init=np.linalg.inv(start[2][c])).fit(x[c])
        assert n_iter[c] == ref.n_iter_
        np.testing.assert_allclose(weights[c], ref.weights_, rtol=1e-8)
        np.testing.assert_allclose(means[c], ref.means_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(covs[c], ref.covariances_, rtol=1e-8, atol=1e-12)


def test_lloyd_and_sampling_match_jaxcollapse(numpy_gmm, x64):
    import jax.numpy as jnp

    from jaxcollapse.families.em.kmeans import lloyd

    rng = np.random.default_rng(1)
    xt = rng.standard_normal((3, 2, 300))
    xt[:, 0, 150:] += 3.0
    start = xt[:, :, [0, 299]].transpose(0, 2, 1)
    ours = numpy_gmm.lloyd(start.copy(), xt, 6)
    for c in range(3):
        np.testing.assert_allclose(ours[c], np.asarray(lloyd(jnp.asarray(start[c]), jnp.asarray(xt[c]), jnp.ones(300), 6)),
                                   rtol=1e-12)
    # draws from a two-component mixture: mean and second moments within 4 standard errors
    weights = np.array([[0.3, 0.7]])
    means = np.array([[[-1.0, 0.0], [2.0, 1.0]]])
    covs = np.array([[np.eye(2), [[1.0, 0.5], [0.5, 2.0]]]])
    draws = numpy_gmm.sample(rng, weights, means, covs, 100_000)[0].T                  # [n, 2]
    mean = weights[0] @ means[0]
    second = sum(w * (c + np.outer(m, m)) for w, m, c in zip(weights[0], means[0], covs[0]))
    for values, expected in ((draws, mean), (draws[:, :, None] * draws[:, None, :], second)):
        z = np.abs(values.mean(0) - expected) / (values.std(0, ddof=1) / np.sqrt(len(values)))
        assert np.all(z < 4.0)
