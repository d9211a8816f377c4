"""Engine contracts: chunking, replay, vmap vs a plain loop, no recompiles, record and snapshots."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse.engine import program as chain_lib
from jaxcollapse.engine import trace_count


def gaussian2():
    fam = jc.Gaussian(dim=2, ddof=1)
    return fam, fam.make_params(mean=[0.0, 1.0], cov=[[1.0, 0.2], [0.2, 0.5]])


def dice():
    fam = jc.Categorical(6)
    return fam, fam.make_params(np.full(6, 1 / 6))


def gmm2():
    fam = jc.GMM(2, dim=2, tol=1e-4, max_iter=30)
    return fam, fam.make_params([0.4, 0.6], [[-1.0, 0.0], [1.0, 0.5]], [np.eye(2), 0.5 * np.eye(2)])


def assert_results_equal(a, b):
    for left, right in zip(jax.tree_util.tree_leaves((a.params, a.metrics, a.info, a.snapshots)),
                           jax.tree_util.tree_leaves((b.params, b.metrics, b.info, b.snapshots))):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


REGIMES = {
    "replace": jc.replace(),
    "accumulate": jc.accumulate(),
    "accumulate_subsample": jc.accumulate_subsample(),
    "keep_real": jc.keep_real(0.3),
    "fresh_real": jc.fresh_real(0.5),
}


CHUNK_CASES = [(gaussian2, name) for name in REGIMES] + [(dice, "replace"), (dice, "accumulate_subsample"),
                                                          (gmm2, "keep_real")]
# covered in the default suite elsewhere (tests/test_family_contract.py runs every family chunked with
# keep_real): these run with -m slow
SLOW_CHUNK_CASES = {("gaussian2", "replace"), ("gaussian2", "accumulate"), ("gaussian2", "keep_real"), ("gmm2", "keep_real")}


@pytest.mark.parametrize("make,name", [
    pytest.param(m, n, marks=pytest.mark.slow) if (m.__name__, n) in SLOW_CHUNK_CASES else (m, n) for m, n in CHUNK_CASES],
    ids=[f"{m.__name__}-{n}" for m, n in CHUNK_CASES])
def test_chunked_run_equals_one_piece_bit_for_bit(make, name):
    fam, src = make()
    regime = REGIMES[name]
    kwargs = dict(n_chains=5, n_generations=11, n_samples=12, regime=regime, snapshot_at=[0, 4, 11])
    whole = jc.simulate(jax.random.key(1), fam, src, **kwargs)
    chunked = jc.simulate(jax.random.key(1), fam, src, chunk_size=4, **kwargs)
    assert_results_equal(whole, chunked)


@pytest.mark.parametrize("make", [gaussian2, dice], ids=["gaussian", "categorical"])
def test_replayed_chain_equals_its_row(make):
    fam, src = make()
    kwargs = dict(n_generations=6, n_samples=15, regime=jc.keep_real(0.2), snapshot_at=[0, 6])
    res = jc.simulate(jax.random.key(2), fam, src, n_chains=4, **kwargs)
    for i in (0, 3):
        alone = jc.simulate(res.chain_key(i), fam, src, n_chains=1, **kwargs)
        row = res.chain(i)
        for left, right in zip(jax.tree_util.tree_leaves((row.params, row.metrics, row.info, row.snapshots)),
                               jax.tree_util.tree_leaves((alone.chain(0).params, alone.chain(0).metrics,
                                                          alone.chain(0).info, alone.chain(0).snapshots))):
            # one chain vs a batch of four compiles to differently vectorised float32 code: ~100 ulp apart
            np.testing.assert_allclose(np.asarray(left), np.asarray(right), rtol=1e-5, atol=1e-6)


def plain_loop_chain(fam, src, chain_key, n_generations, n_samples):
    """The replace regime written as the obvious Python loop, one chain, no scan and no vmap."""
    k_real, k_fit = jax.random.split(jax.random.fold_in(chain_key, 0))
    x = fam.sample(k_real, src, n_samples)
    params, _ = fam.fit(k_fit, x, jnp.ones(n_samples), None)
    history = [params]
    for g in range(1, n_generations + 1):
        k_gen, _, _, k_fit = jax.random.split(jax.random.fold_in(chain_key, g), 4)
        x = fam.generate(k_gen, params, n_samples)
        params, _ = fam.fit(k_fit, x, jnp.ones(n_samples), params)
        history.append(params)
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *history)


def test_vmapped_run_equals_python_loop_over_chains():
    fam, src = gaussian2()
    res = jc.simulate(jax.random.key(3), fam, src, n_chains=3, n_generations=5, n_samples=10)
    keys = jax.random.split(jax.random.key(3), 3)
    for i in range(3):
        loop = plain_loop_chain(fam, src, keys[i], 5, 10)
        np.testing.assert_allclose(res.params.mean[i], loop.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.params.cov[i], loop.cov, rtol=1e-5, atol=1e-6)


def test_same_key_same_numbers():
    fam, src = dice()
    a = jc.simulate(jax.random.key(4), fam, src, n_chains=3, n_generations=4, n_samples=20)
    b = jc.simulate(jax.random.key(4), fam, src, n_chains=3, n_generations=4, n_samples=20)
    c = jc.simulate(jax.random.key(5), fam, src, n_chains=3, n_generations=4, n_samples=20)
    assert_results_equal(a, b)
    assert not np.array_equal(a.params.probs, c.params.probs)


def test_programs_run_with_full_float32_products(monkeypatch):
    """A float32 product's default precision is TF32 on recent NVIDIA GPUs: the engine's programs and an
    eager fit's program are called under jax.default_matmul_precision("float32") (read at trace time)."""
    from jaxcollapse.families.base import compiled_when_eager, family

    seen = []
    for name in ("_start_jit", "_advance_jit"):
        def spy(*args, _name=name, _call=getattr(chain_lib, name), **kwargs):
            seen.append((_name, jax.config.jax_default_matmul_precision))
            return _call(*args, **kwargs)
        monkeypatch.setattr(chain_lib, name, spy)
    fam, src = dice()
    jc.simulate(jax.random.key(4), fam, src, n_chains=3, n_generations=4, n_samples=20)
    assert seen == [("_start_jit", "float32"), ("_advance_jit", "float32")]

    @family(static=())
    class Probe:
        @compiled_when_eager
        def fit(self, x):
            seen.append(("traced fit", jax.config.jax_default_matmul_precision))
            return x @ x

    Probe().fit(jnp.ones(3))
    assert seen[-1] == ("traced fit", "float32")
    assert jax.config.jax_default_matmul_precision is None   # the user's setting is left as it was


def test_advance_traces_a_generation_once(monkeypatch):
    """A skipped step (past a short last chunk) takes its records' shapes from the step's own trace: a second
    trace would add to every compile."""
    traced = []
    step_one = chain_lib.step_one
    monkeypatch.setattr(chain_lib, "step_one", lambda *args: traced.append(1) or step_one(*args))
    fam, src = dice()
    # n_samples=17: a shape no other test compiles, so advance() is traced here (5 = 3 + 2: one step skipped)
    res = jc.simulate(jax.random.key(6), fam, src, n_chains=3, n_generations=5, n_samples=17, chunk_size=3)
    assert len(traced) == 1
    assert res.params.probs.shape == (3, 6, 6)


def test_second_call_with_same_shapes_does_not_recompile():
    fam, src = gaussian2()
    kwargs = dict(n_chains=4, n_generations=5, n_samples=8)  # the shapes of the fraction sweep's single runs
    jc.simulate(jax.random.key(0), fam, src, regime=jc.keep_real(0.1), **kwargs)
    before = trace_count()
    # other key, other fraction, other sampling bias, other source numbers: all traced
    fam2 = jc.Gaussian(dim=2, ddof=1, lam=0.9)
    src2 = fam2.make_params(mean=[3.0, 1.0], cov=[[2.0, 0.0], [0.0, 0.5]])
    jc.simulate(jax.random.key(1), fam2, src2, regime=jc.keep_real(0.7), **kwargs)
    assert trace_count() == before


def test_per_chain_fraction_sweep_equals_separate_runs():
    fam, src = gaussian2()
    fractions = np.array([0.0, 0.25, 0.5, 1.0])
    kwargs = dict(n_chains=4, n_generations=5, n_samples=8)
    swept = jc.simulate(jax.random.key(6), fam, src, regime=jc.keep_real(fractions), **kwargs)
    for i, f in enumerate(fractions):
        single = jc.simulate(jax.random.key(6), fam, src, regime=jc.keep_real(float(f)), **kwargs)
        np.testing.assert_array_equal(swept.params.cov[i], single.params.cov[i])
    # keep_real(1.0) trains on the real data only: every generation equals generation 0
    np.testing.assert_allclose(swept.params.cov[3], np.broadcast_to(swept.params.cov[3, :1], (6, 2, 2)), rtol=1e-6)


def test_record_names_and_callable():
    fam, src = gaussian2()
    kwargs = dict(n_chains=3, n_generations=5, n_samples=10)  # `full` is the program of the vmapped-vs-loop test
    full = jc.simulate(jax.random.key(7), fam, src, **kwargs)
    names = jc.simulate(jax.random.key(7), fam, src, record=("cov", "w2_to_source"), **kwargs)
    assert names.params is None and set(names.metrics) == {"cov", "w2_to_source"}
    np.testing.assert_array_equal(names.metrics["cov"], full.params.cov)
    np.testing.assert_array_equal(names.metrics["w2_to_source"], full.metrics["w2_to_source"])
    custom = jc.simulate(jax.random.key(7), fam, src, record=lambda p: {"trace": jnp.trace(p.cov)}, **kwargs)
    np.testing.assert_allclose(custom.metrics["trace"], np.trace(full.params.cov, axis1=-2, axis2=-1), rtol=1e-6)
    assert custom.metrics["trace"].shape == (3, 6)


def fit_numpy(x, w, ddof):
    mean = (w[:, None] * x).sum(0) / w.sum()
    c = x - mean
    return mean, (w[:, None, None] * c[:, :, None] * c[:, None, :]).sum(0) / (w.sum() - ddof)


@pytest.mark.parametrize("name", ["replace", "accumulate", "keep_real", "fresh_real"])
def test_regime_training_sets_match_numpy_reference(name):
    """Refit every generation in NumPy from the stored fresh points; the regime's rules give the set."""
    fam, src = gaussian2()
    n, n_gen = 10, 6
    regime = REGIMES[name]
    res = jc.simulate(jax.random.key(8), fam, src, n_chains=2, n_generations=n_gen, n_samples=n,
                      regime=regime, snapshot_at=range(n_gen + 1))
    for c in range(2):
        snaps = res.snapshots[c].astype(float)  # [g, n, d]: what each generation drew fresh
        for g in range(1, n_gen + 1):
            if name == "replace":
                x, w = snaps[g], np.ones(n)
            elif name == "accumulate":
                x, w = snaps[: g + 1].reshape(-1, 2), np.ones((g + 1) * n)
            elif name == "keep_real":
                n_real = round(0.3 * n)
                x = np.concatenate([snaps[0][:n_real], snaps[g][: n - n_real]])
                w = np.ones(n)
            else:  # fresh real data: redrawn from the source with the generation's real key (split 1 of 4)
                k_real = jax.random.split(jax.random.fold_in(res.chain_key(c), g), 4)[1]
                n_real = round(0.5 * n)
                fresh = np.asarray(fam.sample(k_real, src, n), float)
                x = np.concatenate([fresh[:n_real], snaps[g][: n - n_real]])
                w = np.ones(n)
            mean, cov = fit_numpy(x, w, ddof=1)
            np.testing.assert_allclose(res.params.mean[c, g], mean, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(res.params.cov[c, g], cov, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(res.params.mean[c, 0], snaps[0].mean(0), rtol=1e-4, atol=1e-5)


def test_accumulate_subsample_draws_from_the_pool():
    fam, src = dice()
    n, n_gen = 20, 8
    res = jc.simulate(jax.random.key(9), fam, src, n_chains=3, n_generations=n_gen, n_samples=n,
                      regime=jc.accumulate_subsample(), snapshot_at=range(n_gen + 1))
    for c in range(3):
        for g in range(1, n_gen + 1):
            pool_counts = np.bincount(res.snapshots[c, : g + 1].ravel(), minlength=6)
            counts = np.rint(res.params.probs[c, g] * n).astype(int)
            np.testing.assert_allclose(res.params.probs[c, g] * n, counts, atol=1e-4)  # n whole points
            assert counts.sum() == n and np.all(counts <= pool_counts)  # without replacement, from the pool


def test_snapshots_hold_the_fresh_points_of_chosen_generations():
    fam, src = gaussian2()
    res = jc.simulate(jax.random.key(10), fam, src, n_chains=2, n_generations=5, n_samples=7, snapshot_at=[5, 0])
    assert res.snapshot_at == (0, 5) and res.snapshots.shape == (2, 2, 7, 2)
    np.testing.assert_allclose(res.params.mean[:, 0], res.snapshots[:, 0].mean(1), rtol=1e-5)
    np.testing.assert_allclose(res.params.mean[:, 5], res.snapshots[:, 1].mean(1), rtol=1e-5)


def test_collapsed_chain_is_flagged_not_raised():
    fam = jc.Gaussian(dim=1, ddof=0)
    src = fam.make_params(mean=[0.0], cov=[[1.0]])
    res = jc.simulate(jax.random.key(11), fam, src, n_chains=2, n_generations=2, n_samples=1)
    assert res.failed.all()  # one point: zero variance, the next sample is degenerate
    floored = jc.simulate(jax.random.key(11), jc.Gaussian(dim=1, ddof=0, reg_covar=1e-3), src,
                          n_chains=2, n_generations=2, n_samples=1)
    assert not floored.failed.any()


def test_source_data_array_subsamples_real_points():
    fam = jc.Gaussian(dim=1, ddof=1)
    data = np.arange(50, dtype=float)[:, None]
    res = jc.simulate(jax.random.key(12), fam, data, n_chains=3, n_generations=2, n_samples=50,
                      snapshot_at=[0])
    for c in range(3):  # n_samples == n_data: generation 0 sees every real point once
        np.testing.assert_array_equal(np.sort(res.snapshots[c, 0, :, 0]), data[:, 0])
    assert "w2_to_source" not in res.metrics  # no true distribution to compare with
