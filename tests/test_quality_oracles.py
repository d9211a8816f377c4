"""Quality stages against their closed forms (jaxcollapse.theory.quality, shared/ORACLES.md section 7).

One-step oracles are conditional on the model that generated the batch: for chain c,
D_c = (what generation g fitted) - oracle(model of generation g - 1) has mean 0 exactly, so its
Monte-Carlo mean over >= 10,000 chains is z-tested against 0 with its own standard error.
"""
import jax
import numpy as np
import pytest
from conftest import Z_MAX, z_score

import jaxcollapse as jc
from jaxcollapse import theory
from jaxcollapse.engine import trace_count

CHAINS = 10_000


def assert_mean_zero(d, what):
    """Each column of d [chains, k] has mean 0 within Z_MAX standard errors (a constant column must be 0)."""
    d = np.asarray(d, dtype=np.float64).reshape(d.shape[0], -1)
    for j in range(d.shape[1]):
        if np.std(d[:, j]) == 0:
            assert d[0, j] == 0, f"{what}[{j}] is constant {d[0, j]}"
            continue
        z = z_score(d[:, j], 0.0)
        assert z < Z_MAX, f"{what}[{j}]: mean {d[:, j].mean():.5f}, z = {z:.2f}"


# ---------------------------------------------------------------- the Gaussian's log-density (the filters' scores)
def test_gaussian_log_prob_equals_scipy_collapsed_and_degenerate_included():
    import scipy.stats

    from jaxcollapse.families.gaussian import GaussianModel

    z = np.array([-7.0, -1.5, -0.2, 0.0, 0.3, 2.0, 9.0], np.float32)
    fam1 = jc.Gaussian(dim=1)
    for mean, log_sd in ((0.7, np.log(1.3)), (0.0, -60.0)):   # -60: a collapsed chain, a variance of 1e-52
        model = GaussianModel(np.array([mean], np.float32), np.eye(1, dtype=np.float32), np.array([log_sd], np.float32))
        x = (mean + np.exp(log_sd) * z).astype(np.float32)[:, None]
        expected = scipy.stats.norm(mean, np.exp(np.float64(log_sd))).logpdf(x[:, 0].astype(np.float64))
        np.testing.assert_allclose(fam1.log_prob(model, x), expected, rtol=2e-6, atol=1e-5)
    cov = np.array([[1.0, 0.4, -0.2], [0.4, 0.8, 0.1], [-0.2, 0.1, 0.5]])
    fam3 = jc.Gaussian(dim=3)
    x3 = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32) * 2
    np.testing.assert_allclose(fam3.log_prob(fam3.make_params([0.1, -0.3, 0.2], cov), x3),
                               scipy.stats.multivariate_normal([0.1, -0.3, 0.2], cov).logpdf(x3), rtol=2e-6, atol=1e-5)
    for fam, d in ((fam1, 1), (fam3, 3)):   # a degenerate model has no density: -inf everywhere, never NaN
        point = GaussianModel(np.zeros(d, np.float32), np.eye(d, dtype=np.float32),
                              np.array([-np.inf] + [0.0] * (d - 1), np.float32))
        out = np.asarray(fam.log_prob(point, np.zeros((4, d), np.float32)))
        assert np.all(out == -np.inf), out


# ---------------------------------------------------------------- filter_top (Categorical, exact)
def test_filter_top_by_source_density_matches_the_exact_categorical_step():
    probs, n = np.array([0.2, 0.5, 0.3]), 10
    fam = jc.Categorical(3)
    res = jc.simulate(jax.random.key(10), fam, fam.make_params(probs), n_chains=CHAINS, n_generations=1, n_samples=n,
                      regime=jc.filter_top("source", 0.5))
    p0, p1 = res.params.probs[:, 0].astype(float), res.params.probs[:, 1].astype(float)
    cache = {}
    expected = np.empty_like(p0)
    for c in range(CHAINS):
        counts = tuple(np.round(p0[c] * n).astype(int))
        if counts not in cache:
            cache[counts] = theory.filter_top_categorical(np.array(counts) / n, np.log(probs), n, 20)
        expected[c] = cache[counts]
    assert_mean_zero(p1 - expected, "p_1 - filter oracle")
    # the filter moved mass to the likeliest state: a check that the test can tell
    assert p1[:, 1].mean() > p0[:, 1].mean() + 0.2


# ---------------------------------------------------------------- verify (Feng et al.)
def bad_states(ctx, x):
    return x < 4  # good: states 0-3; bad: 4 and 5


def test_verifier_lets_through_the_bad_share_of_the_closed_form():
    probs, n, keep_good, keep_bad = np.array([0.25, 0.2, 0.15, 0.1, 0.18, 0.12]), 40, 0.8, 0.3
    fam = jc.Categorical(6)
    res = jc.simulate(jax.random.key(11), fam, fam.make_params(probs), n_chains=CHAINS, n_generations=1,
                      n_samples=n, regime=jc.verify(bad_states, keep_good, keep_bad), snapshot_at=[0, 1])
    kept, kept_bad = res.metrics["verify_kept"][:, 1], res.metrics["verify_kept_bad"][:, 1]
    eps = probs[4:].sum()  # E[bad share generated] = eps exactly (the generation-0 model is unbiased)
    eps_kept = theory.verified_bad_share(eps, keep_good, keep_bad)
    # E[kept bad] = n eps b and E[kept] = n (eps b + (1 - eps) a), so kept_bad - eps' kept has mean 0
    assert_mean_zero((kept_bad - eps_kept * kept)[:, None], "kept_bad - eps' kept")
    assert abs(kept_bad.sum() / kept.sum() - eps) > 0.1  # the verifier changed the share
    # the records and the refit re-derived in NumPy from snapshots and the stage key
    for c in range(3):
        k_stage = jax.random.split(jax.random.fold_in(res.chain_key(c), 1), 4)[2]
        u = np.asarray(jax.random.uniform(k_stage, (n,)))
        x = res.snapshots[c, 1]
        keep = u < np.where(x < 4, np.float32(keep_good), np.float32(keep_bad))
        assert kept[c] == keep.sum() and kept_bad[c] == (keep & (x >= 4)).sum()
        np.testing.assert_allclose(res.params.probs[c, 1], np.bincount(x[keep], minlength=6) / keep.sum(), atol=1e-6)


# ---------------------------------------------------------------- curate (Ferbach et al.)
REWARD = np.array([0.0, 0.5, 1.0, 2.0])


def test_curation_k2_matches_the_one_step_closed_form_and_numpy():
    probs, n = np.array([0.4, 0.3, 0.2, 0.1]), 20
    fam = jc.Categorical(4)
    res = jc.simulate(jax.random.key(12), fam, fam.make_params(probs), n_chains=CHAINS, n_generations=1,
                      n_samples=n, regime=jc.curate(2, REWARD), snapshot_at=[0, 1])
    p0, p1 = res.params.probs[:, 0].astype(float), res.params.probs[:, 1].astype(float)
    expected = np.stack([theory.curation_step_k2(p, REWARD) for p in p0])
    assert_mean_zero(p1 - expected, "p_1 - curation oracle")
    assert theory.expected_reward(p1, REWARD).mean() > theory.expected_reward(p0, REWARD).mean() + 0.1
    np.testing.assert_allclose(res.metrics["curate_reward"][:, 1], theory.expected_reward(p1, REWARD), rtol=1e-5)
    for c in range(3):  # the picks re-derived from the stage key's Gumbel noise, in NumPy
        k_stage = jax.random.split(jax.random.fold_in(res.chain_key(c), 1), 4)[2]
        gumbel = np.asarray(jax.random.gumbel(k_stage, (2 * n,)))
        x = res.snapshots[c, 1]
        pick = np.argmax((REWARD[x] + gumbel).reshape(n, 2), axis=1) + 2 * np.arange(n)
        np.testing.assert_allclose(res.params.probs[c, 1], np.bincount(x[pick], minlength=4) / n, atol=1e-6)


# ---------------------------------------------------------------- sampler settings (Dohmatob et al.)
def test_top_k_lost_mass_and_temperature_top_p_match_their_closed_forms():
    n_states, n = 30, 50
    probs = theory.zipf_probs(n_states, 1.5)
    source = jc.CategoricalParams(probs)
    run = dict(n_chains=CHAINS, n_generations=1, n_samples=n)
    res = jc.simulate(jax.random.key(13), jc.Categorical(n_states, top_k=5), source, **run)
    p0, p1 = res.params.probs[:, 0].astype(float), res.params.probs[:, 1].astype(float)
    q = np.stack([theory.sampler_probs(p, top_k=5) for p in p0])
    lost = np.sum(probs * (p1 == 0), axis=1)
    assert_mean_zero((lost - theory.lost_mass(probs, q, n))[:, None], "lost mass - sum p (1 - q)^T")
    assert np.all(np.sum(p1 > 0, axis=1) <= 5)
    # temperature and top_p are traced: another setting reuses the compiled programs
    before = trace_count()
    hot = jc.simulate(jax.random.key(14), jc.Categorical(n_states, temperature=0.7, top_p=0.83), source, **run)
    assert trace_count() == before
    p0, p1 = hot.params.probs[:, 0].astype(float), hot.params.probs[:, 1].astype(float)
    expected = np.stack([theory.sampler_probs(p, temperature=0.7, top_p=0.83) for p in p0])
    assert_mean_zero(p1 - expected, "p_1 - sampler oracle")


# ---------------------------------------------------------------- the closed forms among themselves
def test_closed_forms_agree_with_each_other_and_with_known_limits():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, r = rng.dirichlet(np.ones(5)), rng.normal(size=5)
        np.testing.assert_allclose(theory.curation_step(p, r, 2), theory.curation_step_k2(p, r), rtol=1e-12)
        for k in (1, 3, 6):
            step = theory.curation_step(p, r, k)
            np.testing.assert_allclose(step.sum(), 1.0, rtol=1e-12)
            assert theory.expected_reward(step, r) >= theory.expected_reward(p, r) - 1e-12  # never decreases
    p, r = np.array([0.5, 0.3, 0.2]), np.array([0.0, 1.0, 2.0])
    tilted = p * np.exp(r) / np.sum(p * np.exp(r))  # K -> infinity, at rate 1 / K
    gaps = [np.abs(theory.curation_step(p, r, k) - tilted).max() for k in (5, 20, 80)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.5 / 80
    assert theory.verified_bad_share(0.3, 1.0, 1.0) == pytest.approx(0.3)
    # a model that memorises T draws of the Zipf source misses mass ~ T^-(1 - 1/beta); top-k leaves a floor
    beta, zipf = 2.0, theory.zipf_probs(100_000, 2.0)
    t = np.array([1e3, 1e4])
    slope = np.diff(np.log(theory.lost_mass(zipf, zipf, t)))[0] / np.log(10)
    assert slope == pytest.approx(-(1 - 1 / beta), abs=0.05)
    floor = zipf[10:].sum()
    assert theory.lost_mass(zipf, theory.sampler_probs(zipf, top_k=10), 1e6) == pytest.approx(floor, rel=1e-6)
    # the corrected Gaussian chain without correction is the plain chain of ORACLES.md section 1
    g = np.arange(0, 50, 7)
    plain = theory.corrected_gaussian_moments(g, 20, 0.0)
    np.testing.assert_allclose(plain["std"], theory.gaussian_expected_std(g, 20), rtol=1e-12)
    np.testing.assert_allclose(plain["mean_sq_error"], theory.gaussian_expected_mean_sq_error(g, 20), rtol=1e-12)


# ---------------------------------------------------------------- long runs
@pytest.mark.slow
def test_curation_over_generations_raises_the_reward_and_keep_real_holds_it_off_the_argmax():
    """Every generation t: E[p_{t+1} | p_t] = f p_real + (1 - f) curate(p_t) (k = 4, exact enumeration), the
    plain chains' mean reward never falls, and with keep_real no chain passes 1 - f (1 - p_real(argmax))."""
    probs, n, gens, k = np.array([0.4, 0.3, 0.2, 0.1]), 40, 30, 4
    fam = jc.Categorical(4)
    src = fam.make_params(probs)
    kw = dict(n_chains=CHAINS, n_generations=gens, n_samples=n)
    plain = jc.simulate(jax.random.key(15), fam, src, regime=jc.curate(k, REWARD), **kw)
    mixed = jc.simulate(jax.random.key(16), fam, src, regime=jc.pipeline(jc.curate(k, REWARD), jc.keep_real(0.25)),
                        snapshot_at=[0], **kw)
    n_real = 10
    real = np.stack([np.bincount(x[:n_real], minlength=4) / n_real for x in mixed.snapshots[:, 0]])
    for res, share in ((plain, 0.0), (mixed, n_real / n)):
        p = res.params.probs.astype(float)
        for t in (0, 1, 5, 15, gens - 1):
            cache = {}
            expected = np.empty_like(p[:, t])
            for c in range(CHAINS):
                key = tuple(np.round(p[c, t] * n).astype(int))
                if key not in cache:
                    cache[key] = theory.curation_step(p[c, t], REWARD, k)
                expected[c] = share * real[c] + (1 - share) * cache[key] if share else cache[key]
            assert_mean_zero(p[:, t + 1] - expected, f"p_{t + 1} - oracle (keep_real {share})")
    # plain curation: E_{p_t}[r] is a submartingale, so each mean step is >= 0 within its error
    steps = np.diff(theory.expected_reward(plain.params.probs.astype(float), REWARD), axis=1)
    se = steps.std(axis=0, ddof=1) / np.sqrt(CHAINS)
    assert np.all(steps.mean(axis=0) > -Z_MAX * np.where(se > 0, se, 1e-12))
    assert steps[:, :5].mean() > 0.05
    argmax = np.argmax(REWARD)
    assert np.mean(plain.params.probs[:, -1, argmax] == 1.0) > 0.9          # plain curation: the argmax takes over
    bound = 1 - (n_real / n) * (1 - real[:, argmax])
    assert np.all(mixed.params.probs[:, :, argmax] <= bound[:, None] + 1e-6)  # with real data it never can
    assert np.mean(mixed.params.probs[:, -1, argmax]) < 0.9


@pytest.mark.slow
def test_corrected_gaussian_chain_is_stable_where_the_plain_chain_collapses():
    """Gillman et al.'s qualitative result with the optimal-transport corrector: E sigma_g and
    E (mu_g - mu)^2 follow their exact recursions (theory.corrected_gaussian_moments) for strength
    0 (collapse), 0.1 and 0.5 (a fixed point near the source)."""
    strengths, n, gens = [0.0, 0.1, 0.5], 20, 200
    fam = jc.Gaussian(dim=1, ddof=1)
    src = fam.make_params(mean=[0.0], cov=[[1.0]])
    per_chain = np.repeat(strengths, CHAINS)
    res = jc.simulate(jax.random.key(17), fam, src, n_chains=per_chain.size, n_generations=gens, n_samples=n,
                      regime=jc.correct("gaussian_to_source", per_chain), record=("mean", "cov"))
    std = np.sqrt(res.metrics["cov"][..., 0, 0].astype(float)).reshape(len(strengths), CHAINS, gens + 1)
    err = (res.metrics["mean"][..., 0].astype(float) ** 2).reshape(len(strengths), CHAINS, gens + 1)
    g = np.array([0, 1, 10, 50, gens])
    for i, s in enumerate(strengths):
        moments = theory.corrected_gaussian_moments(g, n, s)
        for j, gen in enumerate(g):
            assert z_score(std[i, :, gen], moments["std"][j]) < Z_MAX, (s, gen)
            if s > 0:  # with s = 0 the squared error is heavy-tailed late on; ORACLES.md section 1 covers it
                assert z_score(err[i, :, gen], moments["mean_sq_error"][j]) < Z_MAX, (s, gen)
    final = std[:, :, -1].mean(axis=1)
    assert final[0] < 0.15 and final[1] > 0.8 and final[2] > 0.95  # collapse vs stability
