"""Bad input is refused in Python, before anything compiles, with the argument named."""
import jax
import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse.engine import program as chain_lib
from jaxcollapse.engine import trace_count


def gaussian_src(fam):
    return fam.make_params(mean=np.zeros(fam.dim), cov=np.eye(fam.dim))


def run(fam, src, **overrides):
    kwargs = dict(n_chains=2, n_generations=2, n_samples=10) | overrides
    return jc.simulate(jax.random.key(0), fam, src, **kwargs)


@pytest.fixture
def no_compiles():
    before = trace_count()
    yield
    assert trace_count() == before  # refused before the engine traced (so compiled) anything


@pytest.mark.parametrize("overrides,name", [
    (dict(n_chains=0), "n_chains"),
    (dict(n_chains=2.5), "n_chains"),
    (dict(n_generations=-1), "n_generations"),
    (dict(n_samples=0), "n_samples"),
    (dict(n_samples=1), "n_samples"),          # ddof=1 needs two points
    (dict(chunk_size=0), "chunk_size"),
    (dict(snapshot_at=[3]), "snapshot_at"),
    (dict(record=("nope",)), "record"),
    (dict(regime="replace"), "regime"),
    (dict(key=None), "key"),
])
def test_simulate_arguments(no_compiles, overrides, name):
    fam = jc.Gaussian(dim=1, ddof=1)
    key = overrides.pop("key", jax.random.key(0))
    kwargs = dict(n_chains=2, n_generations=2, n_samples=10) | overrides
    with pytest.raises(ValueError, match=name):
        jc.simulate(key, fam, gaussian_src(fam), **kwargs)


@pytest.mark.parametrize("build,name", [
    (lambda: jc.Gaussian(dim=0), "dim"),
    (lambda: jc.Gaussian(dim=1, ddof=2), "ddof"),
    (lambda: jc.Gaussian(dim=1, lam=0.0), "lam"),
    (lambda: jc.Gaussian(dim=1, reg_covar=-1.0), "reg_covar"),
    (lambda: jc.Categorical(1), "n_states"),
    (lambda: jc.keep_real(1.5), "fraction"),
    (lambda: jc.fresh_real(-0.1), "fraction"),
    (lambda: jc.keep_real([0.1, 2.0]), "fraction"),
    (lambda: jc.keep_real(float("nan")), "fraction"),
])
def test_settings(build, name):
    with pytest.raises(ValueError, match=name):
        build()


@pytest.mark.parametrize("cov", [
    [[1.0, 0.5], [0.0, 1.0]],    # not symmetric
    [[1.0, 2.0], [2.0, 1.0]],    # symmetric, indefinite
    [[0.0, 0.0], [0.0, 1.0]],    # singular
    [[1.0, np.nan], [np.nan, 1.0]],
])
def test_covariance_must_be_spd(cov):
    with pytest.raises(ValueError, match="cov"):
        jc.Gaussian(dim=2).make_params(mean=[0.0, 0.0], cov=cov)


def test_mean_shape_and_finiteness():
    fam = jc.Gaussian(dim=2)
    with pytest.raises(ValueError, match="mean"):
        fam.make_params(mean=[0.0], cov=np.eye(2))
    with pytest.raises(ValueError, match="mean"):
        fam.make_params(mean=[0.0, np.inf], cov=np.eye(2))


@pytest.mark.parametrize("probs", [[0.5, 0.6, -0.1], [0.2, 0.2, 0.2], [0.5, np.nan, 0.5], [0.5, 0.5]])
def test_probabilities(probs):
    with pytest.raises(ValueError, match="probs"):
        jc.Categorical(3).make_params(probs)


def test_source_arrays(no_compiles):
    fam = jc.Gaussian(dim=2)
    with pytest.raises(ValueError, match="source"):
        run(fam, np.array([[0.0, np.nan]] * 20))
    with pytest.raises(ValueError, match="source"):
        run(fam, np.zeros((20, 3)))
    with pytest.raises(ValueError, match="n_samples"):
        run(fam, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="source"):
        run(jc.Categorical(3), np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="source"):
        run(fam, None)


def test_real_data_regimes_need_a_real_source(no_compiles):
    fam = jc.Gaussian(dim=1)
    with pytest.raises(ValueError, match="source"):
        run(fam, None, regime=jc.keep_real(0.1))
    with pytest.raises(ValueError, match="fraction"):
        run(fam, gaussian_src(fam), regime=jc.keep_real(np.full(3, 0.1)))  # 3 fractions, 2 chains


def test_pool_memory_is_refused_up_front(no_compiles):
    fam = jc.Gaussian(dim=2)
    with pytest.raises(ValueError, match="max_pool_bytes"):
        run(fam, gaussian_src(fam), regime=jc.accumulate_subsample(), n_generations=1000, max_pool_bytes=10_000)


def test_record_names_are_remembered_per_signature(monkeypatch):
    """simulate() names its records once per (family, source, stage) structure; a source with other
    fields (data, not a distribution: no l2_to_source) gets its own names, and bad names still fail."""
    fam = jc.GMM(2, dim=2)
    src = fam.make_params(weights=[1.0], means=[[0.0, 0.0]], covs=[np.eye(2)])
    data = np.random.default_rng(0).normal(size=(50, 2))
    traced = []
    original = chain_lib.ChainProgram.metric_names
    monkeypatch.setattr(chain_lib.ChainProgram, "metric_names", lambda self: traced.append(1) or original(self))
    monkeypatch.setattr(chain_lib, "_SIGNATURE_CACHE", {})
    build = lambda source, record: chain_lib.ChainProgram(  # noqa: E731
        fam, source, n_chains=2, n_generations=1, n_samples=20, record=record)
    build(src, ("l2_to_source",))
    build(src, ("component_std",))
    assert len(traced) == 1
    with pytest.raises(ValueError, match="record"):
        build(data, ("l2_to_source",))
    assert len(traced) == 2
    with pytest.raises(ValueError, match="record"):
        build(src, ("nope",))
    assert len(traced) == 2
