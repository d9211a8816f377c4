"""The VAE family: it learns, vmaps exactly, collapses under recursion, and refuses bad input.

Compilation dominates the cost on CPU (seconds per program), so the tests share a few jitted
programs of one small family (module-level) and keep step counts small.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxcollapse as jc
from jaxcollapse import vae_metrics
from jaxcollapse.datasets import load_digits
from jaxcollapse.families.vae import VAE, VAEParams

TRAIN, HELDOUT = load_digits(seed=0)
N_TRAIN = 500
FAM = VAE(latent_dim=4, hidden=(64,), n_steps=300, batch_size=32)
X = jnp.asarray(TRAIN[:N_TRAIN])
W = jnp.ones(N_TRAIN)

_fit = jax.jit(FAM.fit_trace)
_elbo = jax.jit(lambda p: FAM.elbo(p, jax.random.key(123), jnp.asarray(HELDOUT), n_draws=8))


@pytest.fixture(scope="module")
def trained():
    params, info, trace = _fit(jax.random.key(0), X, W)
    return params, info, trace


def test_one_generation_learns(trained):
    params, info, trace = trained
    init = FAM.init_params(jax.random.split(jax.random.key(0), 3)[0])  # the fit's own starting point
    before, after = np.asarray(_elbo(init)), np.asarray(_elbo(params))
    gain = after - before  # paired per held-out image, same z-noise (common random numbers)
    n = gain.shape[0]
    se_gain = gain.std(ddof=1) / np.sqrt(n)
    # the noise of one training minibatch's mean ELBO: per-image spread / sqrt(batch_size)
    minibatch_noise = after.std(ddof=1) / np.sqrt(FAM.batch_size)
    assert gain.mean() > 10 * se_gain, (gain.mean(), se_gain)
    assert gain.mean() > 5 * minibatch_noise, (gain.mean(), minibatch_noise)
    # the minibatch trace went up too: last tenth vs first tenth, beyond their standard errors
    m = len(trace) // 10
    first, last = np.asarray(trace[:m]), np.asarray(trace[-m:])
    se = np.sqrt(first.var(ddof=1) / m + last.var(ddof=1) / m)
    assert last.mean() - first.mean() > 10 * se
    assert bool(info.finite) and int(info.n_iter) == FAM.n_steps
    # FitInfo.log_lik is the final mean ELBO of the training set, with the fit's evaluation key
    k_eval = jax.random.split(jax.random.key(0), 3)[2]
    np.testing.assert_allclose(float(info.log_lik), float(jnp.mean(FAM.elbo(params, k_eval, X))), rtol=1e-5)


def test_vmapped_fits_equal_one_by_one(trained):
    keys = jax.random.split(jax.random.key(7), 3)
    keys = jnp.concatenate([jax.random.key(0)[None], keys[1:]])
    batched = jax.jit(jax.vmap(lambda k: FAM.fit_trace(k, X, W)))(keys)
    for i in range(keys.shape[0]):
        alone = trained if i == 0 else _fit(keys[i], X, W)
        # batched and unbatched float32 matmuls sum in different orders: ulp-level differences
        # (measured ~1e-7 after 300 Adam steps); a different chain would differ by ~1e-1
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), rtol=1e-4, atol=1e-5),
            batched, alone)


def test_zero_weight_points_are_never_trained_on():
    # half the points get weight 0 and are replaced by garbage: training must ignore them
    garbage = jnp.ones_like(X).at[N_TRAIN // 2:].set(1.0)
    x = jnp.concatenate([X[: N_TRAIN // 2], garbage[N_TRAIN // 2:]])
    w = jnp.concatenate([jnp.ones(N_TRAIN // 2), jnp.zeros(N_TRAIN - N_TRAIN // 2)])
    clean = jnp.concatenate([X[: N_TRAIN // 2], X[: N_TRAIN // 2]])
    p_garbage, info_garbage, _ = _fit(jax.random.key(3), x, w)
    p_clean, info_clean, _ = _fit(jax.random.key(3), clean, w)
    # same key, same weighted points: identical minibatches, identical params
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                           p_garbage, p_clean)


def test_generate_and_sample(trained):
    params = trained[0]
    sampler = VAE(latent_dim=4, hidden=(64,), n_steps=300, batch_size=32, next_data="sample")

    @jax.jit
    def run(p):
        key = jax.random.key(1)
        return (FAM.generate(key, p, 64), FAM.sample(key, p, 64), sampler.generate(key, p, 64),
                FAM.log_prob(p, X[:10]), FAM.log_prob(p, X[:10]))

    means, draws, sampled, lp, lp_again = jax.tree_util.tree_map(np.asarray, run(params))
    assert means.shape == (64, 8, 8) and means.dtype == FAM.point_dtype
    assert means.min() >= 0.0 and means.max() <= 1.0
    assert len(np.unique(means)) > 2  # grey levels, not binary
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_array_equal(sampled, draws)
    assert lp.shape == (10,) and np.all(lp < 0)
    np.testing.assert_array_equal(lp, lp_again)  # deterministic: a fixed evaluation key


def test_networks_shapes_conv_and_gaussian():
    for shape in [(8, 8), (7, 9), (28, 28)]:
        fam = VAE(latent_dim=3, hidden=(4, 8), architecture="conv", image_shape=shape, n_steps=1, batch_size=1)

        def shapes(key):
            params = fam.init_params(key)
            mean, std = fam.encode(params, jnp.full((2,) + shape, 0.5))
            return mean, std, fam.decode(params, mean), fam.elbo(params, key, jnp.full((2,) + shape, 0.5))

        mean, std, out, elbo = jax.eval_shape(shapes, jax.random.key(0))  # shapes only: no compile
        assert mean.shape == std.shape == (2, 3)
        assert out.shape == (2,) + shape and elbo.shape == (2,)
    gauss = VAE(latent_dim=3, hidden=(16,), likelihood="gaussian", image_shape=(5,), obs_std=0.2)
    x = np.linspace(-1.0, 2.0, 10).reshape(2, 5)  # a Gaussian likelihood accepts any real values
    assert gauss.check_source(x).data.shape == (2, 5)
    elbo = jax.eval_shape(lambda k: gauss.elbo(gauss.init_params(k), k, jnp.asarray(x)), jax.random.key(0))
    assert elbo.shape == (2,)


def test_warm_start_begins_where_the_previous_fit_ended(trained):
    params, _, trace = trained
    warm = VAE(latent_dim=4, hidden=(64,), n_steps=20, batch_size=32, init="previous")
    _, _, trace_warm = jax.jit(warm.fit_trace)(jax.random.key(5), X, W, params)
    # a warm start begins at the trained level (last 20 steps of the fit it continues); from
    # scratch (the first 20 steps of that fit) it began far below. Margins: 5 standard errors.
    ended, began, warm_trace = (np.asarray(t) for t in (trace[-20:], trace[:20], trace_warm))
    se = lambda a, b: np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))  # noqa: E731
    assert abs(warm_trace.mean() - ended.mean()) < 5 * se(warm_trace, ended)
    assert warm_trace.mean() - began.mean() > 5 * se(warm_trace, began)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, name", [
    (dict(latent_dim=0), "latent_dim"),
    (dict(hidden=(64, 0)), "hidden"),
    (dict(hidden=()), "hidden"),
    (dict(n_steps=0), "n_steps"),
    (dict(batch_size=-1), "batch_size"),
    (dict(n_eval=0), "n_eval"),
    (dict(image_shape=(0, 8)), "image_shape"),
    (dict(image_shape=(2, 2, 2)), "image_shape"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(obs_std=-1.0), "obs_std"),
    (dict(architecture="transformer"), "architecture"),
    (dict(likelihood="poisson"), "likelihood"),
    (dict(next_data="mode"), "next_data"),
    (dict(init="warm"), "init"),
    (dict(architecture="conv", image_shape=(64,)), "conv"),
])
def test_bad_settings_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VAE(**kwargs)


def test_bad_data_raises():
    fam = VAE()
    with pytest.raises(ValueError, match=r"\[0, 1\].*bernoulli"):
        fam.check_source(TRAIN * 16.0)  # raw digit pixel values 0..16
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fam.check_source(TRAIN - 0.5)
    with pytest.raises(ValueError, match="rank 3"):
        fam.check_source(TRAIN.reshape(len(TRAIN), 64))  # wrong rank for image_shape (8, 8)
    with pytest.raises(ValueError, match="image_shape"):
        fam.check_source(TRAIN[:, :7, :])
    with pytest.raises(ValueError, match="NaN"):
        fam.check_source(np.full((3, 8, 8), np.nan))
    with pytest.raises(ValueError, match="batch_size"):
        VAE(batch_size=64).check_settings(32)
    with pytest.raises(ValueError, match="batch_size"):
        jc.simulate(jax.random.key(0), VAE(batch_size=64, n_steps=1), TRAIN, n_chains=1, n_generations=1, n_samples=32)
    # flattened data is fine with a matching image_shape; the Gaussian likelihood takes any reals
    assert VAE(image_shape=(64,)).check_source(TRAIN.reshape(-1, 64)).data.shape == (len(TRAIN), 64)
    assert VAE(likelihood="gaussian").check_source(TRAIN * 16.0).data.shape == TRAIN.shape


# ---------------------------------------------------------------- metrics helpers
def test_mean_pairwise_distance_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.random((20, 4, 3)).astype(np.float32)
    flat = x.reshape(20, -1)
    ref = np.mean([np.linalg.norm(flat[i] - flat[j]) for i in range(20) for j in range(20) if i != j])
    labels = np.arange(20) % 10
    distance, zero, distinct = jax.jit(lambda a: (
        vae_metrics.mean_pairwise_distance(a), vae_metrics.mean_pairwise_distance(jnp.ones((5, 3))),
        vae_metrics.n_distinct_nearest(a, a, labels)))(jnp.asarray(x))
    np.testing.assert_allclose(float(distance), ref, rtol=1e-4)
    assert float(zero) == 0.0
    assert int(distinct) == 10


# ---------------------------------------------------------------- with the chain engine
N_CHAINS, N_GENERATIONS = 6, 3


@pytest.fixture(scope="module")
def chains():
    return jc.simulate(jax.random.key(11), FAM, jc.Source(data=TRAIN, heldout=HELDOUT[:64]), n_chains=N_CHAINS,
                       n_generations=N_GENERATIONS,
                       n_samples=N_TRAIN, snapshot_at=[0, 1])


def test_simulate_runs_the_vae(chains):
    res = chains
    shape = (N_CHAINS, N_GENERATIONS + 1)
    assert isinstance(res.params, VAEParams)
    assert res.params.encoder["Dense_0"]["kernel"].shape == shape + (64, 64)
    assert res.info.log_lik.shape == shape and bool(np.all(res.info.finite))
    for name in ("elbo_source", "nll_bound_source", "diversity", "pixel_std"):
        assert res.metrics[name].shape == shape and np.all(np.isfinite(res.metrics[name]))
    assert res.snapshots.shape == (N_CHAINS, 2, N_TRAIN, 8, 8)
    # generation 0 trains on real digits (pixel values k/16), generation 1 on decoder means
    np.testing.assert_array_equal(np.round(res.snapshots[:, 0] * 16) / 16, res.snapshots[:, 0])
    assert not np.array_equal(np.round(res.snapshots[:, 1] * 16) / 16, res.snapshots[:, 1])
    # generation 0's fit in the engine is the family's own fit of the snapshot (same keys)
    k_fit = jax.random.split(jax.random.fold_in(res.chain_key(0), 0))[1]
    p0, _, _ = _fit(k_fit, jnp.asarray(res.snapshots[0, 0]), W)
    np.testing.assert_allclose(p0.decoder["Dense_1"]["bias"], res.params.decoder["Dense_1"]["bias"][0, 0],
                               rtol=1e-4, atol=1e-5)


def test_gen0_encoder_latent_std_falls(chains):
    """The paper's metric: generated images under the generation-0 encoder lose spread."""
    stats = jax.jit(jax.vmap(lambda h: vae_metrics.gen0_latent_stats(FAM, h, jax.random.key(2), 500)))(
        chains.params)
    std = np.asarray(stats["latent_std"])  # [n_chains, n_generations + 1]
    drop = std[:, -1] - std[:, 0]
    se = drop.std(ddof=1) / np.sqrt(N_CHAINS)
    t_crit = scipy.stats.t.ppf(0.99, N_CHAINS - 1)  # one-sided, 1% level
    assert drop.mean() + t_crit * se < 0, (std, drop.mean(), se)
    # and the held-out quality falls with it
    elbo = np.asarray(chains.metrics["elbo_source"])
    assert np.mean(elbo[:, -1] - elbo[:, 0]) < 0


@pytest.mark.slow
def test_conv_vae_learns_and_chains_collapse():
    fam = VAE(latent_dim=8, hidden=(16, 32), architecture="conv", n_steps=500, batch_size=64)
    # held-out images in the source: the ELBO metric needs them (a bare data array has none)
    res = jc.simulate(jax.random.key(0), fam, jc.Source(data=TRAIN, heldout=HELDOUT), n_chains=4, n_generations=3,
                      n_samples=1000)
    elbo_init = float(jnp.mean(fam.elbo(fam.init_params(jax.random.key(0)), jax.random.key(1), jnp.asarray(HELDOUT))))
    assert np.all(res.metrics["elbo_source"][:, 0] > elbo_init + 10)
    stats = jax.vmap(lambda h: vae_metrics.gen0_latent_stats(fam, h, jax.random.key(2), 500))(res.params)
    drop = np.asarray(stats["latent_std"][:, -1] - stats["latent_std"][:, 0])
    assert drop.mean() + scipy.stats.t.ppf(0.99, 3) * drop.std(ddof=1) / 2 < 0
