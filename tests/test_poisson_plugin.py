"""experiments/poisson.py, a family written as a plugin against the public API: it meets the engine's
contract (jc.testing.check_family), its sampler draws Poisson counts, and 10,000 chains follow the
closed forms it declares (a Galton-Watson process with Poisson offspring: extinction and the martingale)."""
import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxcollapse as jc
from jaxcollapse.study.knowledge import knowledge_for

PLUGIN = Path(__file__).resolve().parent.parent / "experiments" / "poisson.py"
MODULE = "jaxcollapse_plugin_poisson"
Z_MAX = 4.0   # |Monte-Carlo estimate - closed form| in standard errors


def load_plugin():
    """The plugin module, imported by file path once per process (a second import would register anew)."""
    if MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(MODULE, PLUGIN)
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE] = module
        spec.loader.exec_module(module)
    return sys.modules[MODULE]


poisson = load_plugin()


def test_the_plugin_registers_its_family_and_declares_its_knowledge():
    # the same file imported under another module name (a study's plugin) takes the name over: compare definitions
    registered = jc.REGISTRY["poisson"]
    assert (registered.__qualname__, Path(sys.modules[registered.__module__].__file__)) == ("Poisson", PLUGIN)
    assert type(knowledge_for(poisson.Poisson())).__qualname__ == "PoissonKnowledge"
    fam = poisson.Poisson()
    assert isinstance(fam, jc.Family) and jc.families.hooks(fam) == {"sufficient_stats", "chain_source", "heldout"}
    config = {"run": {"n_samples": 10}, "source": {"rate": 2.0}, "regime": {"kind": "replace"}}
    assert poisson.KNOWLEDGE.source_from_table(fam, {}).rate == 1.0
    assert poisson.KNOWLEDGE.collapse_rule(fam, config) == {"metric": "rate", "below": 0.05}
    [(curve, _)] = poisson.KNOWLEDGE.theory_curves(fam, config, "extinct", np.arange(3))
    np.testing.assert_allclose(curve, poisson.prob_extinct(np.arange(3), 10, 2.0))
    assert poisson.KNOWLEDGE.theory_curves(fam, {**config, "regime": {"kind": "accumulate"}}, "rate", [1]) == []
    derived = poisson.KNOWLEDGE.derived_metrics(fam, config, None, {"rate": np.array([[0.5, 0.0]])})
    np.testing.assert_array_equal(derived["extinct"], [[0.0, 1.0]])


def test_the_family_meets_the_engine_contract():
    fam = poisson.Poisson()
    report = jc.testing.check_family(fam, fam.make_params(rate=1.0), traced={"lam": 0.9})
    assert "each vmapped chain equals the chain replayed alone from res.chain_key(i) (bit for bit)" in report.passed


def test_a_collapsed_model_has_finite_metrics_and_emits_zeros():
    fam = poisson.Poisson()
    collapsed = poisson.PoissonParams(jnp.asarray(0.0))
    source = jc.Source(params=fam.make_params(rate=1.0), heldout=jnp.array([0, 1, 3], jnp.int32))
    metrics = fam.metrics(jax.random.key(0), collapsed, source)
    assert metrics["rate"] == 0.0 and metrics["prob_zero"] == 1.0
    assert metrics["log_lik"] == -np.inf and metrics["kl_to_source"] == np.inf   # not NaN
    np.testing.assert_array_equal(fam.log_prob(collapsed, jnp.array([0, 2])), [0.0, -np.inf])
    np.testing.assert_array_equal(fam.sample(jax.random.key(1), collapsed, 5), np.zeros(5))


@pytest.mark.parametrize("rate", [0.05, 1.0, 7.5, 40.0, 300.0])
def test_the_sampler_draws_poisson_counts(rate):
    """Chi-square of 100,000 draws against scipy's pmf (bins expecting >= 5 counts); rates above
    poisson.PART are drawn as sums of parts."""
    draws = jax.jit(jax.vmap(lambda k: poisson.poisson_draws(k, rate, 10)))
    x = np.asarray(draws(jax.random.split(jax.random.key(int(rate * 10)), 10_000))).ravel()
    lo, hi = int(stats.poisson.ppf(1e-5, rate)), int(stats.poisson.ppf(1 - 1e-5, rate))
    observed = np.bincount(np.clip(x - lo + 1, 0, hi - lo + 2), minlength=hi - lo + 3)   # below lo, lo..hi, above
    expected = x.size * np.concatenate([[stats.poisson.cdf(lo - 1, rate)], stats.poisson.pmf(np.arange(lo, hi + 1), rate),
                                        [stats.poisson.sf(hi, rate)]])
    keep = expected >= 5
    chi2 = np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep])
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, (chi2, keep.sum() - 1)


GENERATIONS = [1, 2, 5, 10, 20, 30]


def test_10000_chains_follow_the_branching_process_laws():
    """Replace regime, n = 10 counts per generation from rate 1: P(rate_g = 0) = exp(n (f_g(0) - 1)) (binomial
    standard error at the closed form), E[rate_g] = 1 and E[exp(-rate_g)] (standard errors of the means)."""
    fam, n, rate, n_chains = poisson.Poisson(), 10, 1.0, 10_000
    # a fixed held-out set: none drawn per chain (log_lik is not checked here)
    source = jc.Source(params=fam.make_params(rate=rate), heldout=jnp.zeros(1, jnp.int32))
    res = jc.simulate(jax.random.key(2024), fam, source, n_chains=n_chains, n_generations=max(GENERATIONS),
                      n_samples=n, record=("rate", "prob_zero"))
    rates = np.asarray(res.metrics["rate"], np.float64)[:, GENERATIONS]
    prob_zero = np.asarray(res.metrics["prob_zero"], np.float64)[:, GENERATIONS]

    p = poisson.prob_extinct(GENERATIONS, n, rate)
    z_extinct = np.abs(np.mean(rates == 0, axis=0) - p) / np.sqrt(p * (1 - p) / n_chains)
    z_mean = np.abs(rates.mean(0) - poisson.expected_rate(GENERATIONS, rate)) / (rates.std(0, ddof=1) / np.sqrt(n_chains))
    z_zero = (np.abs(prob_zero.mean(0) - poisson.expected_prob_zero(GENERATIONS, n, rate))
              / (prob_zero.std(0, ddof=1) / np.sqrt(n_chains)))
    for name, z in [("P(rate_g = 0)", z_extinct), ("E[rate_g]", z_mean), ("E[exp(-rate_g)]", z_zero)]:
        assert np.all(z < Z_MAX), f"{name}: z = {dict(zip(GENERATIONS, np.round(z, 2).tolist()))}"
    # the variance's closed form, loosely: its Monte-Carlo error is not Gaussian-small for heavy tails
    np.testing.assert_allclose(rates.var(0, ddof=1), poisson.rate_variance(GENERATIONS, n, rate), rtol=0.15)
    assert p[-1] > 0.5   # most chains have collapsed: the law is checked deep into collapse


def test_closed_forms_against_their_definitions():
    """f_g by composition, the conditional law P(extinct | S_0 = k) = f_g(0)^k averaged over S_0 ~ Poisson(n rate),
    and the variance recursion against lam = 1's rate (g + 1) / n."""
    g = np.arange(6)
    f = poisson.iterated_generating_function(g, 0.0, lam=1.3)
    assert f[0] == 0.0 and np.allclose(f[1:], np.exp(1.3 * (f[:-1] - 1)))
    k = np.arange(200)
    mixed = np.sum(stats.poisson.pmf(k, 10 * 0.7)[:, None] * poisson.prob_extinct_given_sum(g, k[:, None]), axis=0)
    np.testing.assert_allclose(mixed, poisson.prob_extinct(g, 10, 0.7), rtol=1e-10)
    np.testing.assert_allclose(poisson.rate_variance(g, 10, 0.7), 0.7 * (g + 1) / 10)
    np.testing.assert_allclose(poisson.expected_rate(g, 2.0, lam=0.5), 2.0 * 0.5 ** g)
