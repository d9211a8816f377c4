"""A Poisson count family as a plugin: one file, written against jaxcollapse's public API only.

Importing this file registers the family under the name "poisson" (jaxcollapse.REGISTRY["poisson"]),
so a study's TOML can say `[family] name = "poisson"` once the file is loaded as a plugin. What the file
declares, top to bottom:

  Poisson, PoissonParams   the family: points are int32 counts, the model a rate lambda >= 0, fitted by
                           weighted maximum likelihood (the weighted mean), sampled exactly (poisson_draws:
                           inversion, one uniform per draw). One traced number, `lam`: a trained model emits
                           Poisson(lam * rate) (lam = 1: exact samples), so a sweep over it never recompiles.
                           Optional hooks: sufficient statistics (sum of w * x, sum of w) for O(1)-memory
                           accumulation, and HELDOUT_SIZE held-out real counts per chain for log_lik.
  closed forms             the law of a chain under the replace regime (below), as plain functions of
                           (generations, n_samples, rate, lam).
  PoissonKnowledge         the family's optional study knowledge, registered for NAME with
                           jaxcollapse.study.knowledge.register_knowledge (the methods take the family first):
                           the TOML source (`rate`, default 1.0), the derived metric `extinct` (rate == 0),
                           the collapse rule (rate below half a count per sample: rate == 0) and the theory
                           overlays of `rate`, `extinct` and `prob_zero`. KNOWLEDGE is its instance.

A study loads the file with `plugins = ["poisson.py"]` (experiments/poisson.toml); a test or a script may
import it by path (importlib.util.spec_from_file_location): the same file imported under another module
name takes the names over (jaxcollapse's registries compare definitions by file and qualified name).

Metrics per generation: `rate` (lambda), `prob_zero` (exp(-lambda)), `log_lik` (the mean log-likelihood of
the chain's held-out real counts), `kl_to_source` (KL(source || model), parametric sources). At collapse
(lambda = 0, absorbing: a rate-0 model emits only zeros) rate and prob_zero stay finite, log_lik is -inf
and kl_to_source +inf, never NaN: log P(0 | rate 0) = 0 exactly and log P(k > 0 | rate 0) = -inf.

The law of a chain (replace regime, n samples per generation, lam = 1 for the martingale)
-----------------------------------------------------------------------------------------
Let S_g = n * lambda_g, the sum of the n counts generation g was fitted on. Given lambda_g, the next
generation's n counts are i.i.d. Poisson(lam * lambda_g), so their sum is Poisson(lam * S_g), and
lambda_{g+1} = S_{g+1} / n. So S is a Galton-Watson branching process with Poisson(lam) offspring, its
offspring generating function f(s) = exp(lam (s - 1)), started from S_0 ~ Poisson(n * rate) (generation
0 is fitted on n real counts from the source rate). With f_g the g-fold composition (f_0(s) = s):

    E[s^S_g]                   = exp(n rate (f_g(s) - 1))
    P(lambda_g = 0)            = exp(n rate (f_g(0) - 1))           the chain has collapsed by generation g
    P(lambda_g = 0 | S_0 = k)  = f_g(0)^k
    E[prob_zero_g]             = E[exp(-lambda_g)] = exp(n rate (f_g(exp(-1 / n)) - 1))
    E[lambda_g]                = lam^g rate                          (lam = 1: a martingale)
    Var[S_{g+1}]               = lam E[S_g] + lam^2 Var[S_g],  Var[S_0] = n rate

With lam = 1 the process is critical: every chain collapses (f_g(0) -> 1) while the mean rate stays put.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

import jaxcollapse as jc
from jaxcollapse.study.knowledge import Knowledge, parametric_source, recorded, register_knowledge

NAME = "poisson"
HELDOUT_SIZE = 200   # held-out real counts per chain from a parametric source (log_lik)


class PoissonParams(NamedTuple):
    rate: jax.Array   # [] lambda >= 0


class PoissonStats(NamedTuple):
    total: jax.Array    # sum of w * x
    weight: jax.Array   # sum of w


@jc.families.register(NAME)
@jc.families.family(static=())
class Poisson(jc.families.FamilyBase):
    """Counts from Poisson(rate); a trained model emits Poisson(lam * rate). `lam` is traced."""

    lam: float = 1.0

    heldout_size = HELDOUT_SIZE

    def __post_init__(self):
        if isinstance(self.lam, (int, float)) and not (np.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam!r}")

    @property
    def point_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def point_dtype(self):
        return jnp.int32

    # ---- host-side checks ------------------------------------------------------------
    def make_params(self, rate=1.0) -> PoissonParams:
        """The true distribution: Poisson(rate), rate a finite number >= 0."""
        if np.ndim(rate) != 0 or not np.isfinite(rate) or rate < 0:
            raise ValueError(f"rate must be one finite number >= 0, got {rate!r}")
        return PoissonParams(jnp.asarray(rate, jnp.result_type(float)))

    def check_params(self, params) -> PoissonParams:
        if not isinstance(params, PoissonParams):
            raise ValueError(f"source must be PoissonParams (or an array of counts) for Poisson, got {type(params).__name__}")
        return self.make_params(float(params.rate))

    def check_data(self, name: str, data):
        data = np.asarray(data)
        if data.ndim != 1 or not np.issubdtype(data.dtype, np.integer) or (data.size and data.min() < 0):
            raise ValueError(f"{name} must be a 1-D array of counts (integers >= 0), got {data.dtype} of shape {data.shape}")
        return jnp.asarray(data, jnp.int32)

    def check_settings(self, n_samples: int) -> None:
        del n_samples   # any number of samples

    # ---- pure, one chain -------------------------------------------------------------
    def sample(self, key, params: PoissonParams, n: int) -> jax.Array:
        """n exact draws (a rate of 0 draws zeros): poisson_draws."""
        return poisson_draws(key, params.rate, n)

    def generate(self, key, params: PoissonParams, n: int, source=None) -> jax.Array:
        return self.sample(key, PoissonParams(self.lam * params.rate), n)

    def log_prob(self, params: PoissonParams, x) -> jax.Array:
        """log P(x | rate), exact at rate 0 (0 for a count of 0, -inf above; numpyro's gives -4.8e-7 for 0 | 0)."""
        k = jnp.asarray(x).astype(params.rate.dtype)
        log_factorial = jnp.where(k < 2, 0.0, gammaln(k + 1.0))
        return xlogy(k, params.rate) - params.rate - log_factorial

    def stats(self, x, w) -> PoissonStats:
        w = jnp.asarray(w)
        return PoissonStats(jnp.sum(w * jnp.asarray(x).astype(w.dtype)), jnp.sum(w))

    def merge_stats(self, a: PoissonStats, b: PoissonStats) -> PoissonStats:
        return PoissonStats(a.total + b.total, a.weight + b.weight)

    def fit_stats(self, stats: PoissonStats) -> tuple[PoissonParams, jc.FitInfo]:
        """The weighted MLE: sum(w x) / sum(w). FitInfo.log_lik is left NaN (the statistics don't hold it)."""
        params = PoissonParams(stats.total / stats.weight)
        return params, _info(params, jnp.asarray(jnp.nan, params.rate.dtype))

    def fit(self, key, x, w, init=None) -> tuple[PoissonParams, jc.FitInfo]:
        """The weighted MLE (weight 0: not in the training set); FitInfo.log_lik is the mean weighted log-likelihood."""
        del key, init   # closed form
        params, _ = self.fit_stats(self.stats(x, w))
        w = jnp.asarray(w, params.rate.dtype)
        log_lik = jnp.sum(jnp.where(w > 0, w * self.log_prob(params, x), 0.0)) / jnp.sum(w)
        return params, _info(params, log_lik)

    def metrics(self, key, params: PoissonParams, source: jc.Source) -> dict:
        del key   # closed forms and the chain's fixed held-out counts
        out = {"rate": params.rate, "prob_zero": jnp.exp(-params.rate)}
        if source.heldout is not None:
            out["log_lik"] = jnp.mean(self.log_prob(params, source.heldout))
        if source.params is not None:
            r0 = source.params.rate
            out["kl_to_source"] = xlogy(r0, r0) - xlogy(r0, params.rate) - r0 + params.rate
        return out


PART = 32.0   # poisson_draws: a rate above this is drawn as a sum of parts of at most PART each


def poisson_draws(key, rate, n: int) -> jax.Array:
    """n draws from Poisson(rate) (one chain; rate a traced scalar >= 0), int32.

    Inversion: count k up from 0 while a uniform U exceeds P(X <= k), one uniform per draw; a rate above
    PART is the sum of ceil(rate / PART) independent Poisson(rate / parts) draws, so e^-rate never
    underflows and the running sums stay accurate. Exact to the resolution of a float32 uniform: a draw
    stops counting once the remaining tail mass is below 1e-7 of the sum. The cost grows with the rate
    (a rate of 1,000 takes 32 parts of ~50 steps each).

    Why not jax.random.poisson: under vmap over chains its two algorithms (Knuth's and a rejection
    sampler) both run for every chain, the rejection loop at a placeholder rate of 1e5: 10,000 chains x
    10 draws at rate 1 took 245 ms on 2 CPU cores, this 4 ms (the 10,000-chain test runs 50 generations).
    """
    dtype = jnp.result_type(float)
    rate = jnp.asarray(rate, dtype)
    parts = jnp.where(jnp.isfinite(rate), jnp.maximum(jnp.ceil(rate / PART), 1.0), 0.0)
    part = jnp.where(parts > 0, rate / jnp.maximum(parts, 1.0), 0.0)

    def one_part(key):
        u = jax.random.uniform(key, (n,), dtype)
        p0 = jnp.exp(-part)

        def counting(carry):
            _, k, p, cdf = carry
            return (u > cdf) & ((k < part) | (p > 1e-7 * cdf))

        def step(carry):
            i, k, p, cdf = carry
            go = counting(carry)
            p = p * part / (i + 1).astype(dtype)
            return i + 1, k + go.astype(jnp.int32), p, jnp.where(go, cdf + p, cdf)

        start = (jnp.zeros((), jnp.int32), jnp.zeros(n, jnp.int32), p0, jnp.full((n,), p0))
        return jax.lax.while_loop(lambda c: jnp.any(counting(c)), step, start)[1]

    def add_part(carry):
        j, total, key = carry
        key, sub = jax.random.split(key)
        return j + 1.0, total + one_part(sub), key

    start = (jnp.zeros((), dtype), jnp.zeros(n, jnp.int32), key)
    return jax.lax.while_loop(lambda c: c[0] < parts, add_part, start)[1]


def _info(params: PoissonParams, log_lik) -> jc.FitInfo:
    return jc.FitInfo(n_iter=jnp.asarray(1, jnp.int32), converged=jnp.asarray(True), log_lik=log_lik,
                      finite=jnp.isfinite(params.rate))


# ---------------------------------------------------------------- closed forms (replace regime)
def iterated_generating_function(generations, s, lam: float = 1.0) -> np.ndarray:
    """f_g(s) for each g in `generations`: the g-fold composition of f(s) = exp(lam (s - 1)), f_0(s) = s."""
    generations = np.asarray(generations, dtype=int)
    values, current = {}, float(s)
    for g in range(int(generations.max(initial=0)) + 1):
        values[g] = current
        current = float(np.exp(lam * (current - 1.0)))
    return np.array([values[int(g)] for g in generations.ravel()]).reshape(generations.shape)


def prob_extinct(generations, n_samples: int, rate: float, lam: float = 1.0) -> np.ndarray:
    """P(lambda_g = 0): the chain has collapsed by generation g (generation 0 fitted on n real counts)."""
    return np.exp(n_samples * rate * (iterated_generating_function(generations, 0.0, lam) - 1.0))


def prob_extinct_given_sum(generations, total: int, lam: float = 1.0) -> np.ndarray:
    """P(lambda_g = 0 | S_0 = total): f_g(0)^total, for a chain whose generation-0 counts summed to `total`."""
    return iterated_generating_function(generations, 0.0, lam) ** total


def expected_prob_zero(generations, n_samples: int, rate: float, lam: float = 1.0) -> np.ndarray:
    """E[exp(-lambda_g)] (the prob_zero metric's mean): S_g's generating function at s = exp(-1 / n)."""
    f = iterated_generating_function(generations, np.exp(-1.0 / n_samples), lam)
    return np.exp(n_samples * rate * (f - 1.0))


def expected_rate(generations, rate: float, lam: float = 1.0) -> np.ndarray:
    """E[lambda_g] = lam^g rate (lam = 1: the rate is a martingale)."""
    return rate * float(lam) ** np.asarray(generations, dtype=float)


def rate_variance(generations, n_samples: int, rate: float, lam: float = 1.0) -> np.ndarray:
    """Var[lambda_g] = Var[S_g] / n^2, with Var[S_{g+1}] = lam E[S_g] + lam^2 Var[S_g] (lam = 1: rate (g + 1) / n)."""
    generations = np.asarray(generations, dtype=int)
    mean, var, values = n_samples * rate, n_samples * rate, {}
    for g in range(int(generations.max(initial=0)) + 1):
        values[g] = var / n_samples ** 2
        mean, var = lam * mean, lam * mean + lam ** 2 * var
    return np.array([values[int(g)] for g in generations.ravel()]).reshape(generations.shape)


# ---------------------------------------------------------------- study knowledge
@register_knowledge(NAME)
class PoissonKnowledge(Knowledge):
    """What a study knows about the Poisson family (host-side; every method takes the family first)."""

    def source_from_table(self, family, table: dict):
        """[source] rate = 1.0 (the default)."""
        return family.make_params(**{"rate": 1.0, **table})

    def derived_names(self, family, config: dict) -> list[str]:
        return ["extinct"] if recorded(config, ("rate",)) else []

    def derived_metrics(self, family, config: dict, source, params: dict) -> dict:
        """extinct: 1.0 where the chain's rate is 0 (collapsed: absorbing), else 0.0; its mean is P(lambda_g = 0)."""
        if "extinct" not in self.derived_names(family, config):
            return {}
        return {"extinct": (np.asarray(params["rate"]) == 0).astype(np.float32)}

    def collapse_rule(self, family, config: dict) -> dict:
        """Collapsed at rate 0: a fitted rate is a multiple of 1 / n_samples, so half of that separates 0."""
        return {"metric": "rate", "below": 0.5 / config["run"]["n_samples"]}

    def theory_curves(self, family, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        """The closed forms above, for a parametric source under the replace regime."""
        if config["regime"]["kind"] != "replace" or not parametric_source(config):
            return []
        n, rate, lam = config["run"]["n_samples"], float(config["source"].get("rate", 1.0)), float(family.lam)
        if metric == "rate":
            return [(expected_rate(generations, rate, lam), r"theory E[$\lambda_g$] = lam$^g$ rate")]
        if metric == "extinct":
            return [(prob_extinct(generations, n, rate, lam), r"theory P($\lambda_g$ = 0)")]
        if metric == "prob_zero":
            return [(expected_prob_zero(generations, n, rate, lam), r"theory E[exp($-\lambda_g$)]")]
        return []


KNOWLEDGE = PoissonKnowledge()
