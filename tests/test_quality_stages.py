"""Quality stages re-checked by plain NumPy from stored snapshots, in pipelines with keep_real and
fresh_real; traced numbers never recompile; bad input is refused before anything compiles.

Each generation's candidates are the stored snapshot; random draws a stage makes (verify's
uniforms) are re-derived from the documented key schedule: generation g of a chain splits
fold_in(chain_key, g) into (generate, real, stage, fit), and a pipeline splits the stage key
once per stage.
"""
import math

import jax
import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse.engine import trace_count

FAM = jc.Gaussian(dim=1, ddof=1)
SRC = FAM.make_params(mean=[0.0], cov=[[1.0]])
N, GENS, CHAINS = 10, 4, 3


def log_normal(x, mean, var):
    return -0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)


def weighted_fit(x, w, ddof=1):
    count = np.sum(w)
    mean = np.sum(w * x) / count
    return mean, np.sum(w * (x - mean) ** 2) / (count - ddof)


def stage_keys(chain_key, generation, n_stages):
    k_stage = jax.random.split(jax.random.fold_in(chain_key, generation), 4)[2]
    return jax.random.split(k_stage, n_stages)


CHAIN_COMPILES = []  # XLA compiles of the chain programs (jit(_start_all), jit(_advance_all))
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, fun_name="", **kw: CHAIN_COMPILES.append(fun_name)
    if name.endswith("backend_compile_duration") and "_all" in fun_name else None)


def user_score(ctx, x):
    return -(x[:, 0] - 0.5) ** 2  # prefers points near 0.5


def filters(gen0_keep, fraction):
    """Four filters in a row (every shipped score and a user function), then keep_real."""
    return jc.pipeline(jc.filter_top(user_score, 0.8), jc.filter_top("model", 0.75),
                       jc.filter_top("generation0", gen0_keep, min_keep=0.5), jc.filter_top("source", 0.9),
                       jc.keep_real(fraction))


@pytest.fixture(scope="module")
def filtered():
    regime = filters([0.5, 0.8, 1.0], 0.1)
    res = jc.simulate(jax.random.key(0), FAM, SRC, n_chains=CHAINS, n_generations=GENS, n_samples=N, regime=regime,
                      snapshot_at=range(GENS + 1))
    return regime, res


def numpy_filters(res, c, gen0_keep, fraction):
    """Refit every generation of chain c from its snapshots with the filters written in NumPy."""
    mean, var = res.params.mean[c, :, 0].astype(float), res.params.cov[c, :, 0, 0].astype(float)
    n_real = round(fraction * N)
    sizes = [N]                                  # what each stage hands on, last stage first
    for keep in (0.9, 0.5, 0.75, 0.8):           # source, generation0 (min_keep), model, user
        sizes.append(math.ceil(sizes[-1] / keep - 1e-9))
    out = []
    for g in range(1, GENS + 1):
        x = res.snapshots[c, g, :, 0].astype(float)
        assert x.size == sizes[-1]
        scores = [lambda x: -(x - 0.5) ** 2, lambda x: log_normal(x, mean[g - 1], var[g - 1]),
                  lambda x: log_normal(x, mean[0], var[0]), lambda x: log_normal(x, 0.0, 1.0)]
        keeps = [0.8, 0.75, gen0_keep, 0.9]
        for i, (score, keep) in enumerate(zip(scores, keeps)):
            hand_on = sizes[-2 - i]
            used = math.ceil(hand_on / keep - 1e-9)
            s = score(x[:used])
            best = np.sort(np.argsort(-s, kind="stable")[:hand_on])
            x = x[:used][best]
        training = np.concatenate([res.snapshots[c, 0, :n_real, 0], x[: N - n_real]])
        out.append(weighted_fit(training, np.ones(N)))
    return np.array(out)


def test_filters_in_a_pipeline_with_keep_real_match_numpy(filtered):
    _, res = filtered
    for c, keep in enumerate([0.5, 0.8, 1.0]):
        expected = numpy_filters(res, c, keep, 0.1)
        np.testing.assert_allclose(res.params.mean[c, 1:, 0], expected[:, 0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(res.params.cov[c, 1:, 0, 0], expected[:, 1], rtol=1e-4, atol=1e-6)


def test_new_keep_and_fraction_reuse_the_compiled_program(filtered):
    regime, res = filtered
    before = trace_count()
    other = jc.simulate(jax.random.key(0), FAM, SRC, n_chains=CHAINS, n_generations=GENS, n_samples=N,
                        regime=filters([0.6, 0.5, 0.9], 0.2), snapshot_at=range(GENS + 1))
    assert trace_count() == before
    for c, keep in enumerate([0.6, 0.5, 0.9]):
        expected = numpy_filters(other, c, keep, 0.2)
        np.testing.assert_allclose(other.params.cov[c, 1:, 0, 0], expected[:, 1], rtol=1e-4, atol=1e-6)
    assert not np.allclose(other.params.cov[:, 1:], res.params.cov[:, 1:])


def coarse_score(ctx, x):
    return np.float32(0.5) * jax.numpy.floor(2 * x[:, 0])  # ties galore: scores on a grid of 0.5


def test_filter_top_as_the_last_stage_reweights_and_matches_numpy():
    """Last in the pipeline, filter_top hands the fit every candidate, dropped ones with weight 0 (no
    compaction); the fitted parameters equal a NumPy stable sort's best n, ties to the earlier candidate."""
    keeps = [0.5, 0.8, 1.0]
    res = jc.simulate(jax.random.key(3), FAM, SRC, n_chains=CHAINS, n_generations=GENS, n_samples=N,
                      regime=jc.filter_top(coarse_score, keeps), snapshot_at=range(GENS + 1))
    tied = 0
    for c, keep in enumerate(keeps):
        for g in range(1, GENS + 1):
            x = res.snapshots[c, g, :, 0]
            used = x[: math.ceil(N / keep - 1e-9)]
            s = 0.5 * np.floor(2 * used)
            best = np.sort(np.argsort(-s, kind="stable")[:N])
            tied += np.sum(s == s[best].min()) > np.sum(s[best] == s[best].min())  # the cut splits equal scores
            m, v = weighted_fit(used[best].astype(float), np.ones(N))
            np.testing.assert_allclose(res.params.mean[c, g, 0], m, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(res.params.cov[c, g, 0, 0], v, rtol=1e-4, atol=1e-6)
    assert tied >= 3  # the ties-to-the-earlier rule was exercised


def test_kept_mask_equals_a_plain_sort_on_hard_cases():
    """_kept (the mask both filter_top paths use) at 200 candidates: drawn, collapsed (a few distinct
    values; two neighbouring floats, as a chain collapsed at a rounding boundary), all equal, -0 / +0,
    scores spread over the whole float range (+inf included: many passes), -inf / NaN / invalid, fewer
    valid than n, and fewer candidates than one pass counts; against a stable sort."""
    from jaxcollapse.stages.quality import _kept

    rng = np.random.default_rng(1)
    m = 200
    z = rng.normal(size=(40, m))
    half = rng.uniform(size=(40, m)) < 0.5
    neighbours = np.where(half, np.float32(-0.9189385), np.nextafter(np.float32(-0.9189385), np.float32(0)))
    spread = np.clip(1e-30 * np.sign(z) * 1e10 ** (z * z), -3e38, 3e38)        # 1e-30 to 3e38, both signs
    cases = [z, np.round(z * 2) / 2, 1e-30 * np.round(z), np.full((40, m), -0.9189385), neighbours,
             np.where(half, 0.0, -0.0), np.where(rng.uniform(size=(40, m)) < 0.05, np.inf, spread),
             np.where(rng.uniform(size=(40, m)) < 0.6, -np.inf, z), np.where(rng.uniform(size=(40, m)) < 0.1, np.nan, z)]
    s = np.concatenate(cases).astype(np.float32)
    valid = ~np.isnan(s) & (s > -np.inf) & (rng.uniform(size=s.shape) < 0.95)
    small = s[:, :6]
    for scores, ok, n in ((s, valid, 1), (s, valid, m // 2), (small, valid[:, :6], 5)):
        kept = np.asarray(jax.jit(jax.vmap(_kept, in_axes=(0, 0, None)), static_argnums=2)(scores, ok, n))
        for c in range(len(scores)):
            best = sorted((i for i in range(scores.shape[1]) if ok[c, i]), key=lambda i: (-scores[c, i], i))[:n]
            assert np.flatnonzero(kept[c]).tolist() == sorted(best), (n, c)


# ---------------------------------------------------------------- correct, verify, fresh_real
def inside(ctx, x):
    return abs(x[:, 0]) < 1.0


STRENGTHS = [0.0, 0.3, 1.0]


@pytest.fixture(scope="module")
def corrected():
    regime = jc.pipeline(jc.correct("gaussian_to_source", STRENGTHS), jc.verify(inside, 0.9, 0.3), jc.fresh_real(0.2))
    res = jc.simulate(jax.random.key(1), FAM, SRC, n_chains=CHAINS, n_generations=GENS, n_samples=N, regime=regime,
                      snapshot_at=range(GENS + 1))
    return res


def test_correct_verify_fresh_real_match_numpy(corrected):
    res = corrected
    n_real = round(0.2 * N)
    for c, strength in enumerate(STRENGTHS):
        chain_key = res.chain_key(c)
        for g in range(1, GENS + 1):
            mean, var = float(res.params.mean[c, g - 1, 0]), float(res.params.cov[c, g - 1, 0, 0])
            x = res.snapshots[c, g, :, 0].astype(float)
            target = 0.0 + np.sqrt(1.0 / var) * (x - mean)          # the optimal-transport map onto N(0, 1)
            x = x + strength * (target - x)
            u = np.asarray(jax.random.uniform(stage_keys(chain_key, g, 3)[1], (N,)))
            kept = u < np.where(np.abs(x) < 1.0, np.float32(0.9), np.float32(0.3))
            k_real = jax.random.split(jax.random.fold_in(chain_key, g), 4)[1]
            fresh = np.asarray(FAM.sample(k_real, SRC, N)[:, 0], float)
            training = np.concatenate([fresh[:n_real], x[: N - n_real]])
            w = np.concatenate([np.ones(n_real), kept[: N - n_real]])
            m, v = weighted_fit(training, w)
            np.testing.assert_allclose(res.params.mean[c, g, 0], m, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(res.params.cov[c, g, 0, 0], v, rtol=1e-4, atol=1e-6)
            assert res.metrics["verify_kept"][c, g] == kept.sum()
            assert res.metrics["verify_kept_bad"][c, g] == (kept & (np.abs(x) >= 1.0)).sum()


# ---------------------------------------------------------------- adaptive_real
def test_adaptive_real_matches_a_numpy_controller():
    n_heldout, tolerance, up, down = 200, 0.02, 0.3, 0.1
    regime = jc.adaptive_real(tolerance=tolerance, step_up=up, step_down=down, start=0.2, n_heldout=n_heldout)
    gens = 6
    res = jc.simulate(jax.random.key(2), FAM, SRC, n_chains=CHAINS, n_generations=gens, n_samples=N, regime=regime,
                      snapshot_at=range(gens + 1))
    raised = 0
    for c in range(CHAINS):
        chain_key = res.chain_key(c)
        k_real0 = jax.random.split(jax.random.fold_in(chain_key, 0))[0]
        heldout = np.asarray(FAM.sample(jax.random.fold_in(k_real0, 0x5EED), SRC, n_heldout)[:, 0], float)
        mean, var = res.params.mean[c, :, 0].astype(float), res.params.cov[c, :, 0, 0].astype(float)
        loss = -np.array([np.mean(log_normal(heldout, m, v)) for m, v in zip(mean, var)])
        share = 0.2
        assert res.metrics["real_share"][c, 0] == 1.0
        for g in range(1, gens + 1):
            degradation = loss[g - 1] - loss[0]
            share = min(share + up, 1.0) if degradation > tolerance else max(share - down, 0.0)
            raised += degradation > tolerance
            n_real = int(np.round(share * N))
            training = np.concatenate([res.snapshots[c, 0, :n_real, 0], res.snapshots[c, g, : N - n_real, 0]])
            m, v = weighted_fit(training.astype(float), np.ones(N))
            np.testing.assert_allclose(res.params.cov[c, g, 0, 0], v, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(res.metrics["real_share"][c, g], n_real / N, rtol=1e-6)
            np.testing.assert_allclose(res.metrics["feedback_degradation"][c, g], degradation, rtol=1e-3, atol=1e-5)
    assert 0 < raised < CHAINS * gens  # the controller both raised and lowered the share


# ---------------------------------------------------------------- bad input, before anything compiles
@pytest.mark.parametrize("make, match", [
    (lambda: jc.filter_top("source", 0.0), r"keep must be in \(0.0, 1.0\]"),
    (lambda: jc.filter_top("source", 1.5), r"keep must be in \(0.0, 1.0\]"),
    (lambda: jc.filter_top("source", [0.5, float("nan")]), "keep must be a finite number"),
    (lambda: jc.filter_top("source", 0.4, min_keep=0.5), "keep must be >= min_keep"),
    (lambda: jc.filter_top("best", 0.5), "score must be one of"),
    (lambda: jc.curate(0, [0.0, 1.0]), "k must be an integer >= 1"),
    (lambda: jc.curate(1.5, [0.0, 1.0]), "k must be an integer >= 1"),
    (lambda: jc.curate(2, [0.0, float("inf")]), "reward must be finite"),
    (lambda: jc.curate(2, [[0.0, 1.0]]), "reward must be one number per state"),
    (lambda: jc.verify(inside, 1.2, 0.1), r"keep_good must be in \[0.0, 1.0\]"),
    (lambda: jc.verify("nonsense", 0.9, 0.1), "is_good must be one of"),
    (lambda: jc.correct("gaussian_to_source", -0.1), r"strength must be in \[0.0, 1.0\]"),
    (lambda: jc.adaptive_real(tolerance=0.1, low=0.5, high=0.2), "low must be <= high"),
    (lambda: jc.adaptive_real("accuracy", 0.1), "metric must be 'heldout_nll'"),
    (lambda: jc.Categorical(4, temperature=0.0), "temperature must be > 0.0"),
    (lambda: jc.Categorical(4, top_k=5), r"top_k must be an integer in \[0, 4\]"),
    (lambda: jc.Categorical(4, top_p=0.0), r"top_p must be in \(0.0, 1.0\]"),
])
def test_bad_settings_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("regime, family, source, match", [
    (jc.filter_top(lambda ctx, x: x, 0.5), FAM, SRC, r"score '<lambda>' must return one number per point, shape \(4,\)"),
    (jc.pipeline(jc.verify(lambda ctx, x: x[:2, 0] > 0, 0.9, 0.1), jc.keep_real(0.5)), FAM, SRC,
     r"is_good must return one bool per point, shape \(4,\), got \(2,\)"),
    (jc.curate(2, lambda ctx, x: x), FAM, SRC, r"reward must return one number per point"),
    (jc.curate(2, [0.0, 1.0]), FAM, SRC, "reward table .* needs integer points"),
    (jc.correct(lambda ctx, x: x[:, 0], 0.5), FAM, SRC, "fn must return points shaped like its input"),
    (jc.correct(lambda ctx, x: x, 0.5), jc.Categorical(3), jc.CategoricalParams(np.full(3, 1 / 3)),
     "correct needs real-valued points"),
    (jc.filter_top("source", 0.5), FAM, np.zeros((8, 1), np.float32), "score 'source' needs the true distribution"),
    (jc.pipeline(jc.filter_top("source", 0.5), jc.keep_real(0.5)), FAM, SRC, None),
])
def test_a_stage_that_does_not_fit_the_family_is_refused_before_compiling(regime, family, source, match):
    """Checked while the first program is traced: no chain program compiles (the control, a fitting stage, does)."""
    before = len(CHAIN_COMPILES)
    if match is None:
        jc.simulate(jax.random.key(0), family, source, n_chains=2, n_generations=1, n_samples=4, regime=regime)
        assert len(CHAIN_COMPILES) > before
        return
    with pytest.raises(ValueError, match=match):
        jc.simulate(jax.random.key(0), family, source, n_chains=2, n_generations=1, n_samples=4, regime=regime)
    assert len(CHAIN_COMPILES) == before


def test_shipped_scores_compare_equal_so_runs_share_programs():
    assert jc.filter_top("source", 0.5) == jc.filter_top(jc.scores.source_log_prob(), 0.5)
    assert hash(jc.filter_top("model", 0.5).score) == hash(jc.filter_top("model", 0.25).score)
    cat = jc.Categorical(3)
    ctx = jc.Context(cat, None, jc.Source(params=cat.make_params([0.5, 0.5, 0.0])), 0, 1, 3, None)
    np.testing.assert_array_equal(jc.scores.in_source_support(ctx, np.array([0, 1, 2])), [True, True, False])


def test_selection_keeps_the_n_best_in_candidate_order_with_ties_to_the_earlier():
    """The radix/bisection select against a plain sort, on ties, all-equal scores, -inf, NaN and too few valid."""
    from jaxcollapse.stages.quality import _best_in_order

    rng = np.random.default_rng(0)
    m = 33
    kinds = [rng.normal(size=(50, m)), rng.integers(0, 4, size=(50, m)).astype(float), np.full((50, m), 1.5),
             np.where(rng.uniform(size=(50, m)) < 0.3, -np.inf, rng.normal(size=(50, m))),
             rng.normal(size=(50, m)) * 1e-30 + rng.integers(0, 2, size=(50, m))]
    s = np.concatenate(kinds).astype(np.float32)
    s[::7, ::5] = np.nan
    valid = np.isfinite(s) & (rng.uniform(size=s.shape) < 0.9)
    for n in (1, 20, m):
        chosen, count = jax.jit(jax.vmap(_best_in_order, in_axes=(0, 0, None)), static_argnums=2)(s, valid, n)
        for c in range(len(s)):
            best = sorted((i for i in range(m) if valid[c, i]), key=lambda i: (-s[c, i], i))[:n]
            assert list(np.asarray(chosen[c])[: int(count[c])]) == sorted(best), (n, c)
