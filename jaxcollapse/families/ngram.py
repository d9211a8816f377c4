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
ties at the k-th kept; at most 64, or >= vocab_size: all), top_p (1: off; keeps the smallest set
of most likely tokens with mass >= top_p), applied in that order to every row. The sampler never
builds the decoded table: a row's cut is read from its 64 largest counts (lax.top_k; the rare
row whose top-p set is larger is bisected), and a draw picks a block of 8 tokens from cumulative
block weights, then a token in it (see _Sampler). `sample` draws from the model itself (free-running,
no decoding settings): real data from a parametric source, held-out data, the unigram law.

Memory: the table holds V^order numbers per chain (char-level text, V ~ 100: order 2-3; word-level
text needs a capped vocabulary, load_text(vocab_size=...)). V^order is limited to 2^27.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks
from jaxcollapse._prefix import doubling_sums, first_exceeding
from jaxcollapse.families.base import FamilyBase, closed_form_info, family, register, wrong_params
from jaxcollapse.types import FitInfo, Source

MAX_TABLE = 2**27  # count-table entries per chain (512 MiB of float32)
TOKENIZERS = ("char", "word")


class NGramParams(NamedTuple):
    counts: jax.Array  # [V^(order-1), V] weighted n-gram counts of the training set (context row, next token)


@register("ngram")
@family(static=("order", "vocab_size", "block", "prompted", "n_eval", "tokenizer"))
class NGram(FamilyBase):
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
            if TOP < self.top_k < self.vocab_size:
                raise ValueError(f"top_k must be between 0 (off) and {TOP}, or >= vocab_size (every token kept), "
                                 f"got {self.top_k}")

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

    def _log_probs_at(self, params: NGramParams, index) -> jax.Array:
        """log p(next | context) at flat n-gram indices (any shape): gathered, never a whole log table."""
        counts = params.counts
        alpha = jnp.asarray(self.smoothing, counts.dtype)
        rows = jnp.sum(counts, axis=-1)
        unigram = jnp.sum(counts, axis=0)
        context, token = index // self.vocab_size, index % self.vocab_size
        seen = rows[context] > 0
        numerator = jnp.where(seen, counts.reshape(-1)[index], unigram[token]) + alpha
        denominator = jnp.where(seen, rows[context], jnp.sum(unigram)) + alpha * self.vocab_size
        return jnp.log(numerator / jnp.maximum(denominator, 1e-30))

    def log_prob(self, params: NGramParams, x) -> jax.Array:
        """log p(x[order-1:] | x[:order-1]) of each block [n] (the first order-1 tokens are context only)."""
        return jnp.sum(self._log_probs_at(params, self._ngram_index(x)), axis=-1)

    def collision_per_context(self, params: NGramParams) -> jax.Array:
        """[V^(order-1)] sum_v p(v | c)^2 of every context row (from row sums of counts and squares)."""
        counts = params.counts
        alpha, v = jnp.asarray(self.smoothing, counts.dtype), self.vocab_size

        def collision(total, squares):  # sum_v ((x_v + alpha) / (total + alpha V))^2
            return (squares + 2 * alpha * total + v * alpha**2) / jnp.maximum(total + alpha * v, 1e-30) ** 2

        rows, unigram = jnp.sum(counts, axis=-1), jnp.sum(counts, axis=0)
        backoff = collision(jnp.sum(unigram), jnp.sum(unigram**2))
        return jnp.where(rows > 0, collision(rows, jnp.sum(counts**2, axis=-1)), backoff)

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
    def sampler(self, params: NGramParams, decoding: bool = True) -> "_Sampler":
        """The next-token sampler of a model: its decoding settings (temperature, top_k, top_p), or with
        decoding=False the model itself (temperature 1, no truncation)."""
        if decoding:
            return _Sampler.build(params.counts, self.smoothing, self.temperature, self.top_k, self.top_p)
        return _Sampler.build(params.counts, self.smoothing, 1.0, 0, 1.0)

    def decoding_weights(self, params: NGramParams) -> jax.Array:
        """[V^(order-1), V] unnormalised next-token weights after temperature, top-k and top-p (a whole
        table, for inspection: sampling never builds it)."""
        return self.sampler(params).weights_table()

    def _truncate(self, weights, top: int | None = None):
        """Zero what top-k and top-p drop from a table of weights [rows, V] (the cut `sampler` applies);
        top: candidates per row read from lax.top_k before rows are bisected (tests use a small one)."""
        weights = jnp.asarray(weights)
        cut = _cuts(weights, jnp.ones(weights.shape[0]), lambda x, peak: x, self.top_k, self.top_p, top or TOP)
        return jnp.where(weights >= cut[:, None], weights, 0.0)

    def sample(self, key, params: NGramParams, n: int) -> jax.Array:
        """n blocks drawn from the model itself (free-running, temperature 1, no truncation)."""
        k_start, k_next = jax.random.split(key)
        start = self._draw_contexts(k_start, params, n)
        return self._continue(k_next, self.sampler(params, decoding=False), start)

    def generate(self, key, params: NGramParams, n: int, source: Source | None = None) -> jax.Array:
        """n blocks the trained model writes with its decoding settings, prompted by real blocks or free."""
        k_start, k_next = jax.random.split(key)
        if self.prompted and self.order > 1:
            if source is None:
                raise ValueError("prompted generation needs the source (its real blocks are the prompts)")
            start = self._prompts(k_start, source, n)
        else:
            start = self._draw_contexts(k_start, params, n)
        return self._continue(k_next, self.sampler(params), start)

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
        cdf = jnp.cumsum(rows)
        context = jnp.searchsorted(cdf, jax.random.uniform(key, (n,)) * cdf[-1], side="right")
        last = rows.shape[0] - 1 - jnp.argmax(rows[::-1] > 0)
        context = jnp.minimum(context, last)
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


TOP = 64               # per row, the largest counts lax.top_k reads to place the top-k / top-p cut
FALLBACK_ROWS = 32     # rows bisected at a time whose cut lies deeper than TOP
BLOCK_WIDTH = 8        # tokens per sampler block: a draw picks a block, then a token in it


def _largest_bits(low, holds):
    """Per row, the largest t in [low, bits of +inf] with holds(t) (true at low, false above some t)."""
    high = jnp.full_like(low, 0x7F800000)

    def halve(_, bounds):
        low, high = bounds
        mid = low + (high - low + 1) // 2
        ok = holds(mid)
        return jnp.where(ok, mid, low), jnp.where(ok, high, mid - 1)

    return jax.lax.fori_loop(0, 31, halve, (low, high))[0]


def _cuts(x, peak, weight, top_k, top_p, top: int = TOP):
    """Per row of a non-negative table x [R, V], the cut c: decoding keeps the tokens with x >= c.

    weight(x, row_peak) is each token's sampling weight, increasing in x (so the most likely tokens are
    those with the largest x, and a cut in x keeps ties together); peak [R] is handed to it. top-k
    keeps the k largest x (ties at the k-th kept; k <= top); top-p then keeps the smallest such set
    whose weight is at least top_p of the kept total. Both are read from each row's `top` largest
    entries (lax.top_k, a partial sort); the few rows whose top-p cut lies deeper are bisected.
    """
    n_rows, width = x.shape
    top = min(top, width)
    k = jnp.asarray(top_k, jnp.int32)
    k = jnp.where(k >= width, 0, jnp.clip(k, 0, top))                    # k >= V keeps every token

    def truncated():
        # behind a barrier, or XLA:CPU rewrites a top_k whose output is sliced into a full sort of every row
        largest = jax.lax.optimization_barrier(jax.lax.top_k(x, top))[0]          # [R, top], descending
        cut_k = jnp.where(k > 0, largest[:, jnp.maximum(k, 1) - 1], jnp.zeros((), x.dtype))
        return jax.lax.cond(jnp.asarray(top_p) < 1, lambda: _top_p_cut(x, peak, weight, largest, cut_k, top_p),
                            lambda: cut_k)

    off = (k == 0) & (jnp.asarray(top_p) >= 1)
    return jax.lax.cond(off, lambda: jnp.zeros(n_rows, x.dtype), truncated)  # 0: every token kept


def _top_p_cut(x, peak, weight, largest, cut_k, top_p):
    """The top-p cut of each row given its top-k cut (see _cuts)."""
    n_rows, top = largest.shape

    def kept(a, rows=slice(None)):
        return jnp.where(a >= cut_k[rows, None], weight(a, peak[rows, None]), 0.0)

    target = top_p * jnp.sum(kept(x), axis=-1)
    smallest = jnp.min(jnp.where(kept(x) > 0, x, jnp.inf), axis=-1)      # the row's smallest kept entry
    first = jnp.sum(doubling_sums(kept(largest)) < target[:, None], axis=-1)  # the candidate reaching top_p
    reached = first < top
    whole = largest[:, -1] <= smallest                                    # every kept entry is a candidate
    cut = jnp.take_along_axis(largest, jnp.minimum(first, top - 1)[:, None], axis=-1)[:, 0]
    at_a_time = min(FALLBACK_ROWS, n_rows)

    def bisect(state):
        """The largest cut t with kept mass >= target, on the float bits of x (non-negative floats order
        as their int32 bits), for up to FALLBACK_ROWS rows still deep."""
        cut, deep = state
        rows = jax.lax.optimization_barrier(jax.lax.top_k(deep.astype(jnp.float32), at_a_time))[1]
        xs, w = x[rows], kept(x[rows], rows)
        bits = jax.lax.bitcast_convert_type(xs, jnp.int32)
        mass = lambda t: jnp.sum(jnp.where(bits >= t, w, 0.0), axis=-1, keepdims=True)  # noqa: E731
        t = _largest_bits(jnp.zeros((at_a_time, 1), jnp.int32), lambda t: mass(t) >= target[rows, None])
        found = jax.lax.bitcast_convert_type(t[:, 0], x.dtype)
        return cut.at[rows].set(jnp.where(deep[rows], found, cut[rows])), deep.at[rows].set(False)

    cut, _ = jax.lax.while_loop(lambda state: jnp.any(state[1]), bisect, (cut, ~reached & ~whole))
    return jnp.maximum(cut, cut_k)


class _Sampler(NamedTuple):
    """Draws next tokens from a count table under decoding settings without building its weight table.

    Row c of `table` is counts[c]; its last row is the unigram counts, which contexts never seen back
    off to. A token's weight is ((x + alpha) / peak_r)^(1/T) if its count x >= cut_r, else 0 (peak_r:
    the row's largest count + alpha, so weights lie in (0, 1] at any temperature). A draw is
    inverse-CDF sampling in two steps: the block of BLOCK_WIDTH tokens from the row's cumulative block
    weights, then the token from that block's own weights, gathered; building it takes a few passes
    over the table, not a row-wise cumsum of it.
    """

    table: jax.Array         # [R + 1, V] the counts, and the unigram counts last
    seen: jax.Array          # [R] contexts with counts
    peak: jax.Array          # [R + 1] largest count + alpha
    cut: jax.Array           # [R + 1] keep tokens with count >= cut
    ends: jax.Array          # [R + 1, n_blocks] cumulative kept weight at each block's end
    has_weight: jax.Array    # [R + 1, n_blocks] blocks with kept weight (a draw lands only in one)
    alpha: jax.Array
    inverse_temperature: jax.Array

    @classmethod
    def build(cls, counts, smoothing, temperature, top_k, top_p) -> "_Sampler":
        alpha = jnp.asarray(smoothing, counts.dtype)
        inverse_temperature = 1.0 / jnp.asarray(temperature, counts.dtype)

        def weight(x, peak):
            return _decoded_weight(x, peak, alpha, inverse_temperature)

        table = jnp.concatenate([counts, jnp.sum(counts, axis=0)[None]])
        peak = jnp.maximum(jnp.max(table, axis=-1) + alpha, 1e-30)
        cut = _cuts(table, peak, weight, top_k, top_p)
        kept = jnp.where(table >= cut[:, None], weight(table, peak[:, None]), 0.0)
        seen = jnp.sum(counts, axis=-1) > 0
        sums = _block_sums(kept)
        return cls(table, seen, peak, cut, doubling_sums(sums), sums > 0, alpha, inverse_temperature)

    def _weights(self, x, row):
        w = _decoded_weight(x, self.peak[row, None], self.alpha, self.inverse_temperature)
        return jnp.where(x >= self.cut[row, None], w, 0.0)

    def _row(self, context):
        """The table row a context reads: its own, or the unigram's for a context never seen."""
        return jnp.where(self.seen[context], context, self.seen.shape[0])

    def weights_table(self):
        rows = self._row(jnp.arange(self.seen.shape[0]))
        return self._weights(self.table[rows], rows)

    def draw(self, context, u):
        """For contexts [n] and uniforms u [n] in [0, 1): the first token whose running kept weight exceeds
        u * the row's total."""
        row = self._row(context)
        width = self.table.shape[-1]
        block = min(BLOCK_WIDTH, width)
        ends = self.ends[row]                                            # [n, n_blocks]
        target = u * ends[:, -1]
        b = first_exceeding(ends, self.has_weight[row], target)         # never a block without kept weight
        before = jnp.where(b > 0, jnp.take_along_axis(ends, jnp.maximum(b - 1, 0)[:, None], axis=-1)[:, 0], 0.0)
        start = jnp.minimum(b * block, width - block)                   # the last block may be partial
        tokens = start[:, None] + jnp.arange(block)
        x = jax.vmap(lambda r, s: jax.lax.dynamic_slice(self.table, (r, s), (1, block))[0])(row, start)
        w = jnp.where(tokens >= (b * block)[:, None], self._weights(x, row), 0.0)
        return (start + first_exceeding(doubling_sums(w), w, target - before)).astype(jnp.int32)


def _decoded_weight(x, peak, alpha, inverse_temperature):
    """A token's sampling weight from its count x: ((x + alpha) / peak)^(1/T), in (0, 1] below the peak."""
    ratio = (x + alpha) / peak
    return jnp.where(ratio > 0, ratio ** inverse_temperature, 0.0)


def _block_sums(kept):
    """[R, n_blocks] sums of BLOCK_WIDTH consecutive tokens (the last block may be shorter)."""
    n_rows, width = kept.shape
    block = min(BLOCK_WIDTH, width)
    full = width // block
    sums = jnp.sum(kept[:, : full * block].reshape(n_rows, full, block), axis=-1)
    if width % block:
        sums = jnp.concatenate([sums, jnp.sum(kept[:, full * block:], axis=-1, keepdims=True)], axis=-1)
    return sums
