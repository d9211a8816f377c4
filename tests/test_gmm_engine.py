"""GMM through the chain engine: shapes, flags, and vmapped chains equal single-chain replays."""
import jax
import numpy as np
import pytest

import jaxcollapse as jc


# slow: test_family_contract.py checks vmapped == replayed GMM chains in the default suite (float32,
# init "previous"); this is the stricter float64 check, with EM run to convergence (~20 s on 2 cores)
@pytest.mark.slow
@pytest.mark.parametrize("init", ["previous", "kmeans++"])
def test_simulate_gmm_and_replay_one_chain(x64, init):
    """float64: in float32 a rounding difference can flip a stopping decision that sits right at tol."""
    fam = jc.GMM(2, dim=2, tol=1e-4, max_iter=200, init=init)
    src = fam.make_params(weights=[1.0], means=[[0.0, 0.0]], covs=[np.eye(2)])  # one blob, K=2 family
    settings = dict(n_chains=1, n_generations=4, n_samples=200)
    res = jc.simulate(jax.random.key(0), fam, src, **{**settings, "n_chains": 3}, snapshot_at=[0, 4])
    assert res.params.covs.shape == (3, 5, 2, 2, 2)
    assert res.metrics["l2_to_source"].shape == (3, 5)
    assert res.metrics["component_std"].shape == (3, 5, 2)
    assert res.snapshots.shape == (3, 2, 200, 2)
    assert np.all(res.info.finite) and np.all(res.info.converged)
    assert np.all(res.info.n_iter >= 1)
    # a vmapped chain equals its replay alone, to rounding (batched and single programs may
    # order sums differently: ~1e-16 per step in float64), with the same EM iteration counts
    for i in (0, 2):
        alone = jc.simulate(res.chain_key(i), fam, src, **settings)
        np.testing.assert_array_equal(alone.info.n_iter[0], res.info.n_iter[i])
        for a, b in zip(alone.params, res.params):
            np.testing.assert_allclose(a[0], b[i], rtol=1e-9, atol=1e-12)


def test_gmm_study_adds_l2_to_generation0_and_draws_contours(tmp_path_factory):
    from _studies import TINY_GMM, finished

    from jaxcollapse import mixture_metrics, study

    results = jc.load(finished(tmp_path_factory, TINY_GMM).path)
    l2 = np.asarray(results.metrics["l2_to_generation0"])
    np.testing.assert_allclose(l2, mixture_metrics.l2_to_generation(results.params, 0), rtol=1e-12)
    assert l2.shape == (4, 4) and np.all(l2[:, 0] < 1e-12) and np.all(l2[:, 1:] > 1e-6)
    assert np.all(np.isfinite(results.metrics["heldout_loglik"]))
    written = {p.name for p in study.plot(results.path)}
    assert {"l2_to_generation0.png", "heldout_loglik.png", "snapshots.png"} <= written


@pytest.mark.slow
def test_chains_agree_with_a_scikit_learn_loop_in_distribution():
    """The whole chain (sampling, k-means init, EM, 10 generations) against the paper's loop with
    scikit-learn: the per-component std at the last generation has the same distribution (KS)."""
    import warnings

    import scipy.stats
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    n_chains, n_generations, n = 96, 10, 250
    fam = jc.GMM(2, dim=2, tol=1e-5, max_iter=2000)
    src = fam.make_params([1.0], [[0.0, 0.0]], [np.eye(2)])
    res = jc.simulate(jax.random.key(0), fam, src, n_chains=n_chains, n_generations=n_generations, n_samples=n,
                      record=("component_std",))
    ours = np.asarray(res.metrics["component_std"])[:, -1].ravel()
    rng = np.random.default_rng(0)
    theirs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(n_chains):
            x = rng.standard_normal((n, 2))
            for _ in range(n_generations + 1):
                gm = GaussianMixture(2, tol=1e-5, max_iter=2000, random_state=int(rng.integers(2**31))).fit(x)
                x = gm.sample(n)[0]
            theirs.extend(np.sqrt(np.trace(gm.covariances_, axis1=1, axis2=2) / 2))
    assert scipy.stats.ks_2samp(ours, np.asarray(theirs)).pvalue > 1e-3
    # and the chains did move: narrower at generation 10 than at 0, by more than 4 standard errors
    stds = np.asarray(res.metrics["component_std"], np.float64).mean(-1)  # [chain, generation]
    shrink = stds[:, -1] - stds[:, 0]
    assert shrink.mean() < -4 * shrink.std(ddof=1) / np.sqrt(n_chains)
