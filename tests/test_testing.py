"""jaxcollapse.testing: check_family passes a good family and says in words what is wrong with a broken one;
check_stage likewise for stages. The families here are coins (Bernoulli counts) written for the test."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import xlogy

import jaxcollapse as jc

# small runs: the checks compile a handful of programs each
SMALL = dict(n_samples=8, n_chains=2, n_generations=4, collapse_generations=40, collapse_samples=2)


class CoinParams(NamedTuple):
    p: jax.Array


@jc.families.family(static=())
class Coin(jc.families.FamilyBase):
    """A coin: points int32 in {0, 1}; p fitted by the (smoothed) weighted mean. `smoothing` is traced."""

    smoothing: float = 0.0

    @property
    def point_shape(self):
        return ()

    @property
    def point_dtype(self):
        return jnp.int32

    def check_params(self, params):
        return CoinParams(jnp.asarray(params.p, jnp.float32))

    def check_data(self, name, data):
        return jnp.asarray(data, jnp.int32)

    def check_settings(self, n_samples):
        pass

    def sample(self, key, params, n):
        return jax.random.bernoulli(key, params.p, (n,)).astype(jnp.int32)

    def generate(self, key, params, n, source=None):
        return self.sample(key, params, n)

    def log_prob(self, params, x):
        return xlogy(x, params.p) + xlogy(1 - x, 1 - params.p)

    def fit(self, key, x, w, init):
        p = (jnp.sum(w * x) + self.smoothing) / (jnp.sum(w) + 2 * self.smoothing)
        return CoinParams(p), jc.FitInfo(jnp.asarray(1, jnp.int32), jnp.asarray(True), jnp.asarray(jnp.nan),
                                         jnp.isfinite(p))

    def metrics(self, key, params, source):
        p = params.p
        return {"p": p, "entropy": -(xlogy(p, p) + xlogy(1 - p, 1 - p))}


@jc.families.family(static=("smoothing",))   # broken: a traced number made static (recompiles)
class BrokenCoin(Coin):
    """Four mistakes at once: the fit reads a Python-level random number (a constant baked in at each trace,
    so every compiled program fits otherwise), ignores the weights, `smoothing` is static, and the entropy is
    written naively (0 * log 0 = NaN once the coin has collapsed)."""

    def fit(self, key, x, w, init):
        jitter = np.random.default_rng().uniform(0.0, 1e-2)
        p = (jnp.mean(x.astype(jnp.float32)) + self.smoothing) / (1.0 + 2 * self.smoothing)
        p = p + jitter * p * (1 - p)   # 0 and 1 stay absorbing
        return CoinParams(p), jc.FitInfo(jnp.asarray(1, jnp.int32), jnp.asarray(True), jnp.asarray(jnp.nan),
                                         jnp.isfinite(p))

    def metrics(self, key, params, source):
        p = params.p
        return {"p": p, "entropy": -(p * jnp.log(p) + (1 - p) * jnp.log(1 - p))}


@jc.families.family(static=())
class KeylessCoin(Coin):
    """generate() ignores the key it is given: every chain and generation repeats one sample."""

    def generate(self, key, params, n, source=None):
        return self.sample(jax.random.key(0), params, n)


SOURCE = CoinParams(np.float32(0.5))


def test_a_good_family_passes():
    report = jc.testing.check_family(Coin(), SOURCE, traced={"smoothing": 0.5}, **SMALL)
    assert report.ok and not report.failures
    assert "a zero-weight point equals the point removed" in report.passed
    assert "each vmapped chain equals the chain replayed alone from res.chain_key(i) (bit for bit)" in report.passed
    assert str(report).startswith("Coin (not registered): all ")


def test_a_broken_family_is_told_in_words_what_fails():
    report = jc.testing.check_family(BrokenCoin(), SOURCE, traced={"smoothing": 0.5}, raise_on_failure=False, **SMALL)
    text = "\n".join(report.failures)
    assert not report.ok
    # the Python-level random number: each program traced bakes in another one
    assert "chain 0 replayed alone from res.chain_key(0) differs from the vmapped run in params.p at generation 0" in text
    assert "the run in chunks of 3 generations differs from the one-piece run in params.p at chain 0, generation" in text
    # the static number
    assert "new values of the family's smoothing and keep_real's fraction 0.25 -> 0.5 traced the engine's program again" \
        in text
    # the weights
    assert "a point of weight 0 changed the fit" in text
    # NaN at collapse
    assert "metrics['entropy'] is NaN at generation" in text
    with pytest.raises(AssertionError, match="checks failed"):   # the default: one AssertionError listing them
        jc.testing.check_family(BrokenCoin(), SOURCE, **SMALL)


def test_a_family_that_ignores_its_key_is_told_so():
    report = jc.testing.check_family(KeylessCoin(), SOURCE, raise_on_failure=False, **SMALL)
    assert ("generate(key, ...) returned the same points for two keys: it must draw from the key it is given (else every "
            "chain and generation repeats one sample)") in report.failures
    # here the frozen sample even reproduces each chain's first fit, whatever the real share


def test_protocol_gaps_are_named_before_anything_runs():
    class HalfLocal(Coin):   # not made with @family (no pytree), and generate_local without fit_local
        def generate_local(self, key, params, n, source=None):
            return self.sample(key, params, n), None

    report = jc.testing.check_family(HalfLocal(), SOURCE, raise_on_failure=False)
    assert report.failures == [
        "the family declares the local_coordinates hook only in part (no fit_local): the engine ignores it",
        "the family is not a JAX pytree: make its class with @jaxcollapse.families.base.family(static=...)"]

    class Sketch:
        def fit(self, key, x, w, init): ...

    assert jc.testing.check_family(Sketch(), SOURCE, raise_on_failure=False).failures == [
        "the family lacks check_data, check_params, check_settings, generate, log_prob, metrics, point_dtype, point_shape, "
        "sample of the Family protocol (jaxcollapse.Family)"]


@jc.stage
class NegativeDrop:
    """Broken: 'drops' the first point with weight -1."""

    def init(self, real, ctx):
        return ()

    def update(self, key, state, batch, ctx):
        return state, batch._replace(w=batch.w.at[0].set(-1.0))


def test_check_stage():
    fam = jc.Categorical(3)
    src = fam.make_params([0.5, 0.3, 0.2])
    small = dict(n_chains=2, n_generations=4, collapse_generations=6)
    assert jc.testing.check_stage(jc.fresh_real(0.5), fam, src, traced={"fraction": 0.25}, **small).ok
    report = jc.testing.check_stage(NegativeDrop(), fam, src, raise_on_failure=False, **small)
    assert "the training set's weights must be finite and >= 0, got [-1.]" in report.failures
