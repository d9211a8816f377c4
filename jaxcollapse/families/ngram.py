"""N-gram language model on token blocks, fitted by (weighted) counts: the language chain of
Shumailov et al.'s third experiment, small enough for thousands of chains.

Points are int32 token blocks [block]. The model of order n is the table of n-gram counts
[V^(n-1) contexts, V next tokens] of its training set (V = vocab_size): sufficient statistics, so
accumulating regimes keep counts, not text (O(1) memory per chain). Context c of tokens
(t_1, ..., t_{n-1}) is row sum_k t_k V^(n-1-k); a block's first n-1 tokens are context only, so
a block of `block` tokens holds block - n + 1 n-grams.

Probabilities: add-alpha smoothing (alpha = smoothing, traced),
    p(v | c) = (count(c, v) + alpha) / (count(c) + alpha V);
a context never seen in training backs off to the unigram distribution of the training tokens
(smoothed alike), so with alpha = 0 every row is still a distribution.

Generation, the paper's setup (prompted=True): generated block i starts with the first n-1 tokens
of real block i mod n_data of source.data (its prompt: an n-gram remembers no more of a longer
one) and continues them; the continuations form the next training set. With n_samples equal to
the number of real blocks every real block prompts once per generation, as in the paper. With
prompted=False the model runs free from a context drawn from its own context frequencies.
Decoding settings (traced): temperature (p^(1/T)), top_k (0: off; keeps the k most likely tokens,
ties at the k-th kept), top_p (1: off; keeps the smallest set of most likely tokens with mass >=
top_p), applied in that order to every row. `sample` draws from the model itself (free-running,
no decoding settings): real data from a parametric source, held-out data, the unigram law.

Memory: the table holds V^order numbers per chain (char-level text, V ~ 100: order 2-3; word-level
text needs a capped vocabulary, load_text(vocab_size=...)). V^order is limited to 2^27.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks
from jaxcollapse.families.base import FamilyBase, closed_form_info, family, register, wrong_params
from jaxcollapse.families.ngram_study import NGramStudy
from jaxcollapse.types import FitInfo, Source

MAX_TABLE = 2**27  # count-table entries per chain (512 MiB of float32)
TOKENIZERS = ("char", "word")


class NGramParams(NamedTuple):
    counts: jax.Array  # [V^(order-1), V] weighted n-gram counts of the training set (context row, next token)


@register("ngram")
@family(static=("order", "vocab_size", "block", "prompted", "n_eval", "tokenizer"))
class NGram(NGramStudy, FamilyBase):
    """An n-gram model of `order` over `vocab_size` token ids; points are int32 blocks [block].

    order: n (1 = unigram: every token drawn from one distribution).
    vocab_size: V, token ids in [0, V).
    smoothing: add-alpha constant (traced; 0 keeps fits exact: the Wright-Fisher chain).
    block: tokens per point.
    prompted: True, generation continues real prompts from source.data (the paper); False, free-running.
    temperature, top_k, top_p: decoding settings of `generate` (traced), see the module docstring.
    n_eval: generated blocks scored per generation by the `generated_perplexity` metric, and
        held-out blocks a parametric source draws per chain.
    tokenizer: "char" | "word": how a study's [source] table tokenizes the shipped corpus
        (jaxcollapse.datasets.load_text); the model itself sees token ids only.

    Examples:
      >>> import jax, jaxcollapse as jc
      >>> text = jc.datasets.load_text("char", block=32)
      >>> fam = jc.NGram(order=2, vocab_size=len(text.vocab), smoothing=0.01, block=32)
      >>> res = jc.simulate(jax.random.key(0), fam, jc.Source(data=text.train, heldout=text.heldout),
      ...                   n_chains=2, n_generations=3, n_samples=200, record=["heldout_perplexity"])
      >>> res.metrics["heldout_perplexity"].shape
      (2, 4)
    """

    order: int
    vocab_size: int
    smoothing: float = 0.0
    block: int = 64
    prompted: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    n_eval: int = 64
    tokenizer: str = "char"

    has_stats = True

    def __post_init__(self):
        _checks.positive_int("order", self.order)
        _checks.positive_int("vocab_size", self.vocab_size, minimum=2)
        _checks.positive_int("block", self.block)
        if self.block < self.order:
            raise ValueError(f"block must be >= order ({self.order}): a block must hold one n-gram, got {self.block}")
        if self.vocab_size ** self.order > MAX_TABLE:
            raise ValueError(f"order and vocab_size give a count table of vocab_size^order = "
                             f"{self.vocab_size}^{self.order} entries per chain, over the {MAX_TABLE} allowed; "
                             "use a smaller order or cap the vocabulary (load_text(vocab_size=...))")
        if not isinstance(self.prompted, (bool, np.bool_)):
            raise ValueError(f"prompted must be true or false, got {self.prompted!r}")
        _checks.positive_int("n_eval", self.n_eval)
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {', '.join(map(repr, TOKENIZERS))}, got {self.tokenizer!r}")
        _checks.number_in("smoothing", self.smoothing, 0.0, np.inf)
        _checks.number_in("temperature", self.temperature, 0.0, np.inf, low_open=True)
        _checks.number_in("top_p", self.top_p, 0.0, 1.0, low_open=True)
        if _checks.is_concrete(self.top_k):
            _checks.positive_int("top_k", self.top_k, minimum=0)

    # ---- shapes --------------------------------------------------------------------------
    @property
    def point_shape(self) -> tuple[int, ...]:
        return (self.block,)

    @property
    def point_dtype(self):
        return jnp.int32

    @property
    def n_contexts(self) -> int:
        return self.vocab_size ** (self.order - 1)

    @property
    def heldout_size(self) -> int:
        return self.n_eval

    # ---- host-side -----------------------------------------------------------------------
    def make_params(self, counts) -> NGramParams:
        """A model from an n-gram count table [V^(order-1), V] (any positive scale; [V] for order 1)."""
        counts = _checks.finite_array("counts", counts)
        if self.order == 1 and counts.shape == (self.vocab_size,):
            counts = counts[None]
        if counts.shape != (self.n_contexts, self.vocab_size):
            raise ValueError(f"counts must have shape [{self.n_contexts}, {self.vocab_size}] "
                             f"(vocab_size^(order-1) contexts, vocab_size tokens), got {counts.shape}")
        if np.any(counts < 0) or counts.sum() <= 0:
            raise ValueError("counts must be non-negative with a positive total")
        return NGramParams(jnp.asarray(counts, jnp.result_type(float)))

    def check_params(self, params) -> NGramParams:
        if not isinstance(params, NGramParams):
            raise wrong_params(self, params, NGramParams)
        return self.make_params(params.counts)

    def check_data(self, name: str, data):
        return check_token_blocks(name, data, self.block, self.vocab_size)

    def check_settings(self, n_samples: int) -> None:
        _checks.positive_int("n_samples", n_samples)

    # ---- the model -------------------------------------------------------------------------
    def probs(self, params: NGramParams) -> jax.Array:
        """[V^(order-1), V] p(next | context), add-alpha smoothed; unseen contexts back off to the unigram."""
        counts = params.counts
        alpha = jnp.asarray(self.smoothing, counts.dtype)
        rows = jnp.sum(counts, axis=-1, keepdims=True)
        unigram = jnp.sum(counts, axis=0)
        unigram = (unigram + alpha) / jnp.maximum(jnp.sum(unigram) + alpha * self.vocab_size, 1e-30)
        smoothed = (counts + alpha) / jnp.maximum(rows + alpha * self.vocab_size, 1e-30)
        return jnp.where(rows > 0, smoothed, unigram)

    def _ngram_index(self, x):
        """Flat index context * V + next of every n-gram of blocks x [n, block] -> [n, block - order + 1]."""
        m = self.block - self.order + 1
        index = jnp.zeros((x.shape[0], m), jnp.int32)
        for k in range(self.order):
            index = index * self.vocab_size + x[:, k:k + m]
        return index

    def log_prob(self, params: NGramParams, x) -> jax.Array:
        """log p(x[order-1:] | x[:order-1]) of each block [n] (the first order-1 tokens are context only)."""
        table = jnp.log(self.probs(params)).reshape(-1)
        return jnp.sum(table[self._ngram_index(x)], axis=-1)

    def collision_per_context(self, params: NGramParams) -> jax.Array:
        """[V^(order-1)] sum_v p(v | c)^2 of every context row."""
        return jnp.sum(self.probs(params) ** 2, axis=-1)

    # ---- sufficient statistics ---------------------------------------------------------------
    def stats(self, x, w) -> jax.Array:
        index = self._ngram_index(x)
        weights = jnp.broadcast_to(jnp.asarray(w, jnp.result_type(float))[:, None], index.shape)
        counts = jnp.zeros(self.n_contexts * self.vocab_size, weights.dtype).at[index.reshape(-1)].add(
            weights.reshape(-1))
        return counts.reshape(self.n_contexts, self.vocab_size)

    def merge_stats(self, a, b):
        return a + b

    def fit_stats(self, counts) -> tuple[NGramParams, FitInfo]:
        params = NGramParams(counts)
        return params, closed_form_info(params)

    def fit(self, key, x, w, init=None) -> tuple[NGramParams, FitInfo]:
        del key, init  # closed form
        return self.fit_stats(self.stats(x, w))

    # ---- sampling ----------------------------------------------------------------------------
    def decoding_weights(self, params: NGramParams) -> jax.Array:
        """[V^(order-1), V] unnormalised next-token weights after temperature, top-k and top-p."""
        p = self.probs(params)
        log_p = jnp.log(p)
        peak = jnp.max(log_p, axis=-1, keepdims=True)
        weights = jnp.where(p > 0, jnp.exp((log_p - peak) / self.temperature), 0.0)
        truncate = (jnp.asarray(self.top_k) > 0) | (jnp.asarray(self.top_p) < 1)
        return jax.lax.cond(truncate, self._truncate, lambda w: w, weights)

    def _truncate(self, weights):
        """Zero what top-k and top-p drop: each keeps the weights at or above a per-row threshold, found
        by bisection on the float bits (positive floats order as their int32 bits): exact, and 31 masked
        row sums instead of a sort of every row."""
        bits = jax.lax.bitcast_convert_type(weights, jnp.int32)
        k = jnp.asarray(self.top_k, jnp.int32)
        count = lambda t: jnp.sum(bits >= t, axis=-1, keepdims=True)  # noqa: E731
        weights = jnp.where(bits >= _largest_threshold(bits, lambda t: (count(t) >= k) & (k > 0)), weights, 0.0)
        bits = jax.lax.bitcast_convert_type(weights, jnp.int32)
        total = jnp.sum(weights, axis=-1, keepdims=True)
        mass = lambda t: jnp.sum(jnp.where(bits >= t, weights, 0.0), axis=-1, keepdims=True)  # noqa: E731
        return jnp.where(bits >= _largest_threshold(bits, lambda t: mass(t) >= self.top_p * total), weights, 0.0)

    def sample(self, key, params: NGramParams, n: int) -> jax.Array:
        """n blocks drawn from the model itself (free-running, temperature 1, no truncation)."""
        k_start, k_next = jax.random.split(key)
        start = self._draw_contexts(k_start, params, n)
        return self._continue(k_next, _Sampler.of(self.probs(params)), start)

    def generate(self, key, params: NGramParams, n: int, source: Source | None = None) -> jax.Array:
        """n blocks the trained model writes with its decoding settings, prompted by real blocks or free."""
        k_start, k_next = jax.random.split(key)
        if self.prompted and self.order > 1:
            if source is None:
                raise ValueError("prompted generation needs the source (its real blocks are the prompts)")
            start = self._prompts(k_start, source, n)
        else:
            start = self._draw_contexts(k_start, params, n)
        return self._continue(k_next, _Sampler.of(self.decoding_weights(params)), start)

    def _prompts(self, key, source: Source, n: int):
        """The first order-1 tokens of real blocks 0, 1, ..., n-1 (mod the pool size)."""
        if source.data is not None:
            pool = source.data
            return pool[jnp.arange(n) % pool.shape[0], : self.order - 1]
        return self.sample(key, source.params, n)[:, : self.order - 1]

    def _draw_contexts(self, key, params: NGramParams, n: int):
        """n starting contexts [n, order-1] drawn from the training set's context frequencies."""
        if self.order == 1:
            return jnp.zeros((n, 0), jnp.int32)
        rows = jnp.sum(params.counts, axis=-1)
        context = _Sampler.of(rows[None]).draw(jnp.zeros(n, jnp.int32), jax.random.uniform(key, (n,)))
        digits = [(context // self.vocab_size ** (self.order - 2 - k)) % self.vocab_size for k in range(self.order - 1)]
        return jnp.stack(digits, axis=-1).astype(jnp.int32)

    def _continue(self, key, sampler: "_Sampler", start):
        """Blocks [n, block] that begin with `start` [n, order-1] and continue by the sampler's rows."""
        n, first = start.shape[0], self.order - 1
        context = jnp.zeros(n, jnp.int32)
        for k in range(first):
            context = context * self.vocab_size + start[:, k]
        uniforms = jax.random.uniform(key, (self.block - first, n))

        def step(context, u):
            token = sampler.draw(context, u)
            return (context * self.vocab_size + token) % self.n_contexts, token

        _, tokens = jax.lax.scan(step, context, uniforms)
        return jnp.concatenate([start.astype(jnp.int32), tokens.T], axis=1)

    # ---- metrics -------------------------------------------------------------------------------
    def reference(self, source: Source) -> NGramParams:
        """The model generated text is scored by: the true model of a parametric source, else the model
        fitted to the whole real pool source.data (= every chain's generation 0 when n_samples is the
        pool size, the paper's setup)."""
        if source.params is not None:
            return source.params
        w = jnp.ones(source.data.shape[0], jnp.result_type(float))
        return self.fit_stats(self.stats(source.data, w))[0]

    def perplexity(self, params: NGramParams, x) -> jax.Array:
        """Per-block perplexity [n]: exp of the mean negative log-probability of its scored tokens."""
        return jnp.exp(-self.log_prob(params, x) / (self.block - self.order + 1))

    def metrics(self, key, params: NGramParams, source: Source) -> dict:
        """heldout_perplexity: per-token perplexity of source.heldout (when there is one);
        generated_perplexity [n_eval]: per-block perplexity of n_eval blocks this model generates
        (prompted by the first real blocks; the metrics key, the same every generation), scored by
        the reference model (see `reference`); vocabulary_size: token types in the training set;
        ngram_support_size: distinct n-grams in it; collision: sum_c share(c) sum_v p(v|c)^2, the
        collision probability per context averaged with the contexts' training shares."""
        counts = params.counts
        rows = jnp.sum(counts, axis=-1)
        out = {
            "vocabulary_size": jnp.sum(jnp.sum(counts, axis=0) > 0).astype(jnp.int32),
            "ngram_support_size": jnp.sum(counts > 0).astype(jnp.int32),
            "collision": jnp.sum(rows * self.collision_per_context(params)) / jnp.maximum(jnp.sum(rows), 1e-30),
        }
        if source.heldout is not None:
            scored = source.heldout.shape[0] * (self.block - self.order + 1)
            out["heldout_perplexity"] = jnp.exp(-jnp.sum(self.log_prob(params, source.heldout)) / scored)
        generated = self.generate(key, params, self.n_eval, source)
        out["generated_perplexity"] = self.perplexity(self.reference(source), generated)
        return out


def check_token_blocks(name: str, data, block: int, vocab_size: int):
    """Token blocks [n, block] of ids in [0, vocab_size) as int32 (ValueError naming `name` otherwise)."""
    arr = np.asarray(data)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array of token blocks [n, block], "
                         f"got dtype {arr.dtype} and shape {arr.shape}")
    if arr.shape[1] != block or arr.shape[0] < 1:
        raise ValueError(f"{name} must hold blocks of block={block} tokens [n, {block}], "
                         f"got shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= vocab_size:
        raise ValueError(f"{name} holds token ids in [{arr.min()}, {arr.max()}], outside the family's "
                         f"vocabulary [0, vocab_size={vocab_size}): vocab_size must be the text's "
                         "vocabulary size (len(load_text(...).vocab))")
    return jnp.asarray(arr, jnp.int32)


def _largest_threshold(bits, holds):
    """Per row, the largest t in [1, bits of +inf] with holds(t) (true at t = 1, false above some t)."""
    low = jnp.ones(bits.shape[:-1] + (1,), jnp.int32)
    high = jnp.full_like(low, 0x7F800000)

    def halve(_, bounds):
        low, high = bounds
        mid = low + (high - low + 1) // 2
        ok = holds(mid)
        return jnp.where(ok, mid, low), jnp.where(ok, high, mid - 1)

    return jax.lax.fori_loop(0, 31, halve, (low, high))[0]


class _Sampler(NamedTuple):
    """Inverse-CDF draws from the rows of a weight table by binary search: O(log V) per draw."""

    cdf: jax.Array            # [rows, V] running sums of the weights
    last: jax.Array           # [rows] the last index with positive weight (a draw never lands past it)

    @classmethod
    def of(cls, weights) -> "_Sampler":
        positive = weights > 0
        last = weights.shape[-1] - 1 - jnp.argmax(positive[:, ::-1], axis=-1)
        return cls(jnp.cumsum(weights, axis=-1), last.astype(jnp.int32))

    def draw(self, row, u):
        """For rows [n] and uniforms u [n] in [0, 1): the first v with cdf[row, v] > u * total[row]."""
        width = self.cdf.shape[-1]
        flat = self.cdf.reshape(-1)
        target = u * self.cdf[row, -1]

        def halve(_, bounds):
            low, high = bounds
            mid = (low + high) // 2
            active = low < high
            right = active & (flat[row * width + jnp.minimum(mid, width - 1)] <= target)
            return jnp.where(right, mid + 1, low), jnp.where(active & ~right, mid, high)

        start = (jnp.zeros_like(row), jnp.full_like(row, width))
        low, _ = jax.lax.fori_loop(0, math.ceil(math.log2(width + 1)), halve, start)
        return jnp.minimum(low, self.last[row]).astype(jnp.int32)
