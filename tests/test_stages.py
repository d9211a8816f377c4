"""Stages: a user's own stage in a pipeline, fresh real data, per-chain numbers, checks.

Training sets are re-derived in NumPy from stored snapshots (and, for fresh real data, from the
documented key schedule), then refitted and compared with the engine's fits.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcollapse as jc


@jc.stage
class DropUnlikely:
    """The README's stage: drop synthetic points whose log-density under the source is below `threshold`."""

    threshold: float

    def init(self, real, ctx):
        return ()

    def update(self, key, state, batch, ctx):
        logp = ctx.family.log_prob(ctx.source.params, batch.x)
        return state, batch._replace(w=batch.w * (logp >= self.threshold))


FAM = jc.Gaussian(dim=1, ddof=0)
SRC = FAM.make_params(mean=[0.0], cov=[[1.0]])
N, GENS = 20, 5


def numpy_fit(x, w):
    mean = np.sum(w * x) / np.sum(w)
    return mean, np.sum(w * (x - mean) ** 2) / np.sum(w)


def log_density(x):
    return -0.5 * x**2 - 0.5 * np.log(2 * np.pi)


def test_user_stage_in_a_pipeline_with_keep_real_matches_numpy():
    threshold = -1.5  # keeps |x| <= 1.05 under N(0, 1)
    regime = jc.pipeline(DropUnlikely(threshold), jc.keep_real(0.1))
    res = jc.simulate(jax.random.key(0), FAM, SRC, n_chains=3, n_generations=GENS, n_samples=N, regime=regime,
                      snapshot_at=range(GENS + 1))
    n_real = round(0.1 * N)
    dropped = 0
    for c in range(3):
        snaps = res.snapshots[c, :, :, 0].astype(np.float64)
        for g in range(1, GENS + 1):
            synthetic = snaps[g][: N - n_real]
            keep = (log_density(synthetic) >= threshold).astype(float)
            dropped += int(np.sum(keep == 0))
            x = np.concatenate([snaps[0][:n_real], synthetic])
            mean, var = numpy_fit(x, np.concatenate([np.ones(n_real), keep]))
            np.testing.assert_allclose(res.params.mean[c, g, 0], mean, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(res.params.cov[c, g, 0, 0], var, rtol=1e-4, atol=1e-6)
    assert dropped > 0  # the filter acted


def test_fresh_real_draws_a_new_real_sample_each_generation():
    """The real share is redrawn from the source with the generation's real key (split 1 of 4)."""
    f = 0.25
    res = jc.simulate(jax.random.key(1), FAM, SRC, n_chains=2, n_generations=GENS, n_samples=N,
                      regime=jc.fresh_real(f), snapshot_at=range(GENS + 1))
    n_real = round(f * N)
    for c in range(2):
        for g in range(1, GENS + 1):
            k_real = jax.random.split(jax.random.fold_in(res.chain_key(c), g), 4)[1]
            fresh = np.asarray(FAM.sample(k_real, SRC, N)[:, 0], np.float64)
            synthetic = res.snapshots[c, g, :, 0].astype(np.float64)
            x = np.concatenate([fresh[:n_real], synthetic[: N - n_real]])
            mean, var = numpy_fit(x, np.ones(N))
            np.testing.assert_allclose(res.params.mean[c, g, 0], mean, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(res.params.cov[c, g, 0, 0], var, rtol=1e-4, atol=1e-6)


def test_per_chain_threshold_is_one_run_equal_to_separate_runs():
    thresholds = [-1.0, -2.0, -5.0]
    kw = dict(n_generations=3, n_samples=N)
    swept = jc.simulate(jax.random.key(2), FAM, SRC, n_chains=3, regime=jc.pipeline(DropUnlikely(thresholds)), **kw)
    for i, t in enumerate(thresholds):
        single = jc.simulate(jax.random.key(2), FAM, SRC, n_chains=3, regime=jc.pipeline(DropUnlikely(t)), **kw)
        np.testing.assert_array_equal(swept.params.cov[i], single.params.cov[i])
    assert len(np.unique(swept.params.cov[:, -1])) == 3


@pytest.mark.parametrize("make, fraction, n, match", [
    (jc.keep_real, 0.1, 4, "fraction 0.1 with n_samples=4"),
    (jc.fresh_real, 0.95, 10, "fraction 0.95 with n_samples=10"),
    (jc.keep_real, [0.0, 0.01], 10, "fraction 0.01 with n_samples=10"),
])
def test_a_share_rounding_to_no_real_point_or_to_all_is_refused(make, fraction, n, match):
    with pytest.raises(ValueError, match=match):
        jc.simulate(jax.random.key(0), FAM, SRC, n_chains=2, n_generations=1, n_samples=n, regime=make(fraction))


def test_pipeline_rejects_what_is_not_a_stage():
    with pytest.raises(ValueError, match="pipeline stage"):
        jc.pipeline(jc.keep_real(0.1), lambda batch: batch)
    with pytest.raises(ValueError, match="threshold must be a scalar or have one value per chain"):
        jc.simulate(jax.random.key(0), FAM, SRC, n_chains=2, n_generations=1, n_samples=4,
                    regime=DropUnlikely(jnp.zeros(3)))
