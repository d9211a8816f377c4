"""Quality checks of the synthetic batch: filters, verifiers, curation, correction.

    filter_top(score, keep)          generate ceil(n / keep) candidates, train on the best n by a score
    verify(is_good, keep_good, keep_bad)   keep each good point with probability keep_good, each bad
                                     one with keep_bad (Feng et al. 2024, "Beyond Model Collapse")
    curate(k, reward)                each training point is picked from k fresh candidates with
                                     probability proportional to exp(reward) (Ferbach et al. 2024)
    correct(fn, strength)            move each point toward fn(ctx, x) by `strength` (Gillman et al. 2024)

They act on the synthetic batch, so they come first in a pipeline; a mixing stage comes last:
`jc.pipeline(jc.filter_top("source", 0.5), jc.keep_real(0.1))`. A dropped point keeps its slot
with weight 0, and a later mixing stage keeps the slot empty (the training set is then smaller).
Numbers (keep, keep_good, keep_bad, strength, a reward table) are traced: scalar or one per
chain, so a sweep over them is one vmapped run; counts that fix shapes (k, the candidates a
filter generates) are static.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import _checks, types
from jaxcollapse._prefix import prefix_sums
from jaxcollapse._registry import Registry
from jaxcollapse.families.base import has_sufficient_stats
from jaxcollapse.stages import scores as scores_lib
from jaxcollapse.stages.base import number, stage
from jaxcollapse.stages.registry import register_stage

_ROUNDING = 1e-6  # n / keep within this relative distance of an integer counts as that integer
_EXACT_COUNTS = 2 ** 24  # float32 sums of 0s and 1s are exact below this many candidates


def candidates(n: int, keep: float) -> int:
    """ceil(n / keep): the candidates a filter keeping share `keep` draws to hand on n points."""
    ratio = n / float(keep)
    return int(math.ceil(ratio - _ROUNDING * ratio))


class FilterState(NamedTuple):
    score: Any         # the score's own state (e.g. the generation-0 model)


@stage(static=("score", "min_keep"))
class FilterTop:
    """Keep the best n of ceil(n / keep) candidates by score (ties: the earlier candidate).

    The engine generates ceil(n / min_keep) candidates; a chain whose keep is larger uses only the
    first ceil(n / keep) of them. Kept points stay in the order they were generated. A point
    scored NaN or -inf is never kept (its slot gets weight 0). As the last stage, for a family
    with sufficient statistics, it hands on every candidate, the dropped ones with weight 0: the
    same fit without compacting the batch (update_to_fit).
    """

    keep: Any = dataclasses.field(metadata={"toml": "keep"})
    score: Any = dataclasses.field(metadata={"toml": scores_lib.SCORES})
    min_keep: float = dataclasses.field(metadata={"toml": "keep"})
    name = "filter_top"
    # the engine stores the generated points once (engine/step.py, _stored): the scores, the
    # selection and the fit all read them, and XLA would otherwise recompute the random draws in each
    stores_batch = True

    def init(self, real, ctx):
        state = self.score.init(real, ctx)
        scores_lib.check_per_point(f"score {self.score.name!r}", lambda x: self.score(state, ctx, x), real)
        return FilterState(state)

    def update(self, key, state, batch, ctx):
        s, valid, n = self._scored(state, batch, ctx)
        chosen, count = _best_in_order(s, valid, n)
        w = jnp.where(jnp.arange(n) < count, batch.w[chosen], 0.0)
        return state, types.TrainingSet(types.take(batch.x, chosen), w)

    def update_to_fit(self, key, state, batch, ctx):
        """As the last stage: a family whose fit sees only the weighted points (sufficient statistics)
        gets the whole batch with weight 0 on the dropped candidates (the same fit, no compaction)."""
        if not has_sufficient_stats(ctx.family):
            return self.update(key, state, batch, ctx)
        s, valid, n = self._scored(state, batch, ctx)
        return state, batch._replace(w=jnp.where(_kept(s, valid, n), batch.w, 0.0))

    def _scored(self, state, batch, ctx):
        """(scores [n_batch], which candidates may be kept, n): those past ceil(n / keep) may not."""
        n_batch = types.n_points(batch.x)
        n = self._hands_on(n_batch)
        s = jnp.asarray(self.score(state.score, ctx, batch.x), jnp.result_type(float))
        ratio = n / self.keep
        used = jnp.ceil(ratio - _ROUNDING * ratio)
        valid = (jnp.arange(n_batch) < used) & (batch.w > 0) & (s > -jnp.inf)  # NaN > -inf is False
        return s, valid, n

    def _hands_on(self, n_batch: int) -> int:
        """The n with candidates(n, min_keep) == n_batch (one at most: n -> ceil(n / keep) is increasing)."""
        n = max(1, int(n_batch * self.min_keep))
        while n > 1 and candidates(n, self.min_keep) > n_batch:
            n -= 1
        while candidates(n + 1, self.min_keep) <= n_batch:
            n += 1
        if candidates(n, self.min_keep) != n_batch:
            raise ValueError(f"filter_top got a batch of {n_batch} points, which is ceil(n / {self.min_keep}) "
                             "for no n; it must follow its batch_size()")
        return n

    def batch_size(self, n: int) -> int:
        return candidates(n, self.min_keep)


def _order_key(s):
    """Unsigned integers in the order of the floats s (the IEEE trick: flip negatives, set the sign bit).

    -0.0 and 0.0 get one key: equal scores, so the earlier candidate goes first (as a stable sort).
    """
    s = jnp.where(s == 0, jnp.zeros((), s.dtype), s)
    bits = jax.lax.bitcast_convert_type(s, jnp.uint64 if s.dtype == jnp.float64 else jnp.uint32)
    sign = jnp.asarray(1, bits.dtype) << (8 * bits.dtype.itemsize - 1)
    return jnp.where(bits & sign, ~bits, bits | sign)


def _best_in_order(s, valid, n: int):
    """Indices of the n best valid scores in candidate order (ties: the earlier one), and how many there are.

    The kept mask (_kept), then each kept candidate scattered to its rank among the kept (a prefix
    sum: log-step doubling, as XLA:CPU's cumsum is slow).
    """
    kept = _kept(s, valid, n)
    index = jnp.arange(s.shape[0], dtype=jnp.int32)
    slot = jnp.where(kept, prefix_sums(kept.astype(jnp.int32)) - 1, n)      # rank among the kept; n = discarded
    chosen = jnp.zeros(n + 1, jnp.int32).at[slot].set(index)[:n]
    return chosen, jnp.sum(kept)


def _kept(s, valid, n: int, per_pass: int = 3):
    """Mask of the n best valid scores s [m] (ties: the earlier candidate); fewer if fewer are valid.

    Written for XLA:CPU under vmap, where sort and top_k are slow, a while loop runs every chain as
    long as the slowest, and counting a few thresholds at once is one pass over the candidates (a
    matrix product). On the scores' order keys, a bracket [lo, hi) with count(lo) >= n > count(hi)
    is narrowed by per_pass + 1 counted thresholds a pass: first the first candidates' own keys and
    each + 1 (an equal-score cut, as in a collapsed chain, is found at once), then lo + 1 and evenly
    spaced keys, until count(lo) == n (the keys >= lo are kept) or the bracket is one key wide (ties
    at the cut: _position_of finds the last of them kept). An invalid score has key 0, below every
    valid one, and is never kept.

    4 thresholds a pass, not 16: a pass costs more than in proportion to its thresholds (the [k, m]
    comparisons are stored before the product; 10,000 chains of 200: 0.7 ms for 4, 1.1 ms for 8,
    3.3 ms for 16), and most generations of a run need one pass (collapsed chains tie at their cut).
    On the benchmark's 10,000 chains of 200 Gaussian candidates: 1 pass once chains collapse (from
    generation 10 or so), up to 10-15 in the first generations (6-9 with 16 thresholds a pass); the
    selection then takes 3.6 ms a generation instead of 6.8 collapsed, 19-28 instead of 25-50 early
    (benchmarks/RESULTS.md, "filter_top's cost").
    """
    m = s.shape[0]
    key = jnp.where(valid, _order_key(s), 0)
    index = jnp.arange(m, dtype=jnp.int32)
    ones = jnp.ones(m, jnp.float32)
    top = jnp.asarray(np.iinfo(key.dtype).max, key.dtype)   # above every key (+inf's is smaller)

    def count(above):   # [k, m] bool -> [k] counts, as a matrix product
        if m >= _EXACT_COUNTS:
            return jnp.sum(above, axis=1).astype(jnp.int32)
        return (above.astype(jnp.float32) @ ones).astype(jnp.int32)

    def narrow(lo, hi, at_lo, at_hi, thresholds, counts):
        """The tightest bracket the counted thresholds give (counts fall as thresholds rise)."""
        enough = counts >= n
        lo = jnp.maximum(lo, jnp.max(jnp.where(enough, thresholds, 0)))
        hi = jnp.minimum(hi, jnp.min(jnp.where(enough, top, thresholds)))
        at_lo = jnp.minimum(at_lo, jnp.min(jnp.where(enough, counts, m)))
        at_hi = jnp.maximum(at_hi, jnp.max(jnp.where(enough, 0, counts)))
        return lo, hi, at_lo, at_hi

    # one loop for all passes: its operand `key` is then stored once, not recomputed from the
    # score (and the generating random draws) for every threshold counted
    # the first pass: the first candidates' own keys and each + 1, so a cut among equal keys (a collapsed
    # chain's scores) is found at once; a pad of key 0 counts every point
    sampled = jnp.pad(key[:per_pass // 2 + 1], (0, max(0, per_pass // 2 + 1 - m)))
    first = jnp.concatenate([sampled, sampled + 1])[:per_pass + 1]
    parts = jnp.arange(1, per_pass + 1, dtype=key.dtype)
    one = jnp.ones((1,), key.dtype)

    # later passes also try two more candidates' own keys (2 and 3, then 4 and 5, ...) in place of the
    # evenly spaced keys beside the middle one, where they fall inside the bracket: a bracket open on one
    # side (both first keys on the same side of the cut) then closes on the data, not on the key range
    # around it (on the benchmark's first generations: at most 10-15 passes, not 16-17)
    spare = np.array([0, per_pass - 1]) if per_pass >= 3 and m >= 4 else None

    def open_keys(carry):
        lo, hi, at_lo, _, passes = carry
        return (passes == 0) | ((at_lo > n) & (hi - lo > 1))

    def split_keys(carry):
        lo, hi, at_lo, at_hi, passes = carry
        width = hi - lo                                    # evenly spaced keys inside (lo, hi), no overflow
        spaced = lo + (width // (per_pass + 1)) * parts + (width % (per_pass + 1)) * parts // (per_pass + 1)
        if spare is not None:
            drawn = jax.lax.dynamic_slice(key, ((2 * passes) % (m - 1),), (2,))
            spaced = spaced.at[spare].set(jnp.where((drawn > lo) & (drawn < hi), drawn, spaced[spare]))
        thresholds = jnp.where(passes > 0, jnp.concatenate([lo + one, spaced]), first)
        return (*narrow(lo, hi, at_lo, at_hi, thresholds, count(key[None, :] >= thresholds[:, None])), passes + 1)

    lo, hi, at_lo, at_hi, _ = jax.lax.while_loop(
        open_keys, split_keys, (jnp.zeros((), key.dtype), top, jnp.asarray(m, jnp.int32), jnp.zeros((), jnp.int32),
                                jnp.zeros((), jnp.int32)))
    # ties at the cut (count(lo) > n, lo one key wide): keep the first n - at_hi of the keys equal to lo
    tied = (key == lo) & (lo > 0)
    # a loop that runs once, or not at all when no chain has ties at its cut
    cut_index = jax.lax.while_loop(lambda c: c < 0, lambda c: _position_of(tied, n - at_hi),
                                   jnp.where(at_lo > n, -1, m).astype(jnp.int32))
    return (key > lo) | (tied & (index <= cut_index))    # key 0 (invalid) is never above lo >= 0


def _position_of(mask, rank):
    """The index of mask's rank-th True (1-based; rank <= its count), in one pass: count the Trues
    in blocks of about sqrt(m) candidates, then inside the one block that holds the rank-th."""
    m = mask.shape[0]
    width = next(w for w in range(math.isqrt(max(m - 1, 0)) + 1, m + 1) if m % w == 0 or w * w >= 2 * m)
    n_blocks = -(-m // width)
    dtype = jnp.float32 if m < _EXACT_COUNTS else jnp.int32
    blocks = jnp.pad(mask, (0, n_blocks * width - m)).reshape(n_blocks, width).astype(dtype)
    per_block = blocks @ jnp.ones(width, dtype)
    through = per_block @ jnp.triu(jnp.ones((n_blocks, n_blocks), dtype))    # Trues up to each block's end
    block = jnp.sum(through < rank).astype(jnp.int32)                       # the block holding the rank-th
    before = jnp.sum(jnp.where(jnp.arange(n_blocks) < block, per_block, 0))
    inside = blocks[jnp.minimum(block, n_blocks - 1)] @ jnp.triu(jnp.ones((width, width), dtype))
    return block * width + jnp.sum(inside + before < rank).astype(jnp.int32)


@register_stage("filter_top")
def filter_top(score, keep, *, min_keep=None) -> FilterTop:
    """Train on the best share `keep` of the synthetic candidates by `score` (higher = better).

    score: "source" (log-density under the true distribution), "generation0" (under the
      generation-0 model), "model" (under the current model), another name registered with
      jc.stages.register_score, a score object (jc.scores), or a function fn(ctx, x) -> [n].
    keep: in (0, 1], scalar or one per chain (traced: a new value reuses the compiled program as
      long as min_keep stays the same).
    min_keep: the smallest keep the compiled program serves (static; default: the smallest given):
      each generation draws ceil(n_samples / min_keep) candidates.
    """
    keep = number("keep", keep, 0.0, 1.0, low_open=True)
    smallest = float(np.min(keep))
    min_keep = smallest if min_keep is None else float(number("min_keep", min_keep, 0.0, 1.0, low_open=True))
    if smallest < min_keep:
        raise ValueError(f"keep must be >= min_keep = {min_keep:g} (the candidates drawn are ceil(n / min_keep)), "
                         f"got {smallest:g}")
    return FilterTop(keep, scores_lib.as_score(score), min_keep)


# ---------------------------------------------------------------- verify
class VerifyState(NamedTuple):
    kept: Any          # [] points kept this generation (generation 0: the real sample's size)
    kept_bad: Any      # [] of which bad


@stage(static=("is_good",))
class Verify:
    """Keep each good point with probability keep_good, each bad one with keep_bad (weight 0 = dropped).

    Its key draws one uniform per point: point i is kept when u_i < (keep_good if good else keep_bad).
    Records verify_kept and verify_kept_bad per chain and generation.
    """

    keep_good: Any = dataclasses.field(metadata={"toml": "share"})
    keep_bad: Any = dataclasses.field(metadata={"toml": "share"})
    is_good: Any = dataclasses.field(metadata={"toml": scores_lib.VERIFIERS})
    name = "verify"

    def init(self, real, ctx):
        scores_lib.check_per_point("is_good", lambda x: self.is_good(ctx, x), real, kind="bool")
        good = jnp.asarray(self.is_good(ctx, real), bool)
        n = types.n_points(real)
        return VerifyState(jnp.asarray(n, jnp.int32), jnp.sum(~good).astype(jnp.int32))

    def update(self, key, state, batch, ctx):
        good = jnp.asarray(self.is_good(ctx, batch.x), bool)
        u = jax.random.uniform(key, good.shape)
        kept = (u < jnp.where(good, self.keep_good, self.keep_bad)) & (batch.w > 0)
        w = jnp.where(kept, batch.w, 0.0)
        counts = VerifyState(jnp.sum(kept).astype(jnp.int32), jnp.sum(kept & ~good).astype(jnp.int32))
        return counts, batch._replace(w=w)

    def record(self, state) -> dict:
        return {"verify_kept": state.kept, "verify_kept_bad": state.kept_bad}


@register_stage("verify")
def verify(is_good, keep_good, keep_bad) -> Verify:
    """A verifier with known error rates: keep good points w.p. keep_good, bad ones w.p. keep_bad.

    is_good: "source_support" (the source gives the point positive density), another name registered
      with jc.stages.register_verifier, or fn(ctx, x) -> [n] bool.
    keep_good, keep_bad: in [0, 1], scalar or one per chain (traced).
    The kept bad share is eps keep_bad / (eps keep_bad + (1 - eps) keep_good) for a bad share eps
    (jc.theory.verified_bad_share).
    """
    return Verify(number("keep_good", keep_good, 0.0, 1.0), number("keep_bad", keep_bad, 0.0, 1.0),
                  scores_lib.as_check(is_good))


# ---------------------------------------------------------------- curate
class CurateState(NamedTuple):
    reward: Any        # [] mean reward of the training points formed this generation (0: of the real sample)


@stage(static=("k", "reward_fn"), shared=("reward_table",))
class Curate:
    """Each of the n points is picked from k fresh candidates with probability softmax(reward).

    The engine generates n * k candidates; point i is picked from candidates i*k .. i*k + k - 1 by
    the Gumbel-max trick (argmax of reward + Gumbel noise, one Gumbel per candidate from the stage's
    key). A candidate with weight 0, or reward NaN or -inf, is never picked; a group with none left
    gives weight 0. Records curate_reward, the mean reward of the picked points.
    """

    # [n_states] reward per state (integer points), or None; TOML's reward: numbers, or a registered reward's name
    reward_table: Any = dataclasses.field(metadata={"toml": "numbers", "names": scores_lib.REWARDS, "key": "reward"})
    k: int = dataclasses.field(metadata={"toml": "count"})
    reward_fn: Any      # fn(ctx, x) -> [n], or None
    name = "curate"

    def reward(self, ctx, x):
        if self.reward_fn is not None:
            return jnp.asarray(self.reward_fn(ctx, x), jnp.result_type(float))
        return self.reward_table[x]

    def init(self, real, ctx):
        if self.reward_table is not None and not jnp.issubdtype(real.dtype, jnp.integer):
            raise ValueError("curate: a reward table (one reward per state) needs integer points (Categorical); "
                             "for other families give reward as a function (ctx, x) -> [n]")
        if self.reward_fn is not None:
            scores_lib.check_per_point("reward", lambda x: self.reward_fn(ctx, x), real)
        return CurateState(jnp.mean(self.reward(ctx, real)))

    def update(self, key, state, batch, ctx):
        n = types.n_points(batch.x) // self.k
        r = self.reward(ctx, batch.x)
        valid = (batch.w > 0) & (r > -jnp.inf)
        noisy = jnp.where(valid, r, -jnp.inf) + jax.random.gumbel(key, r.shape, r.dtype)
        pick = jnp.argmax(noisy.reshape(n, self.k), axis=1) + self.k * jnp.arange(n)
        w = jnp.where(valid[pick], batch.w[pick], 0.0)
        mean = jnp.sum(w * jnp.where(valid[pick], r[pick], 0.0)) / jnp.maximum(jnp.sum(w), 1e-30)
        return CurateState(mean), types.TrainingSet(types.take(batch.x, pick), w)

    def batch_size(self, n: int) -> int:
        return n * self.k

    def record(self, state) -> dict:
        return {"curate_reward": state.reward}


@register_stage("curate")
def curate(k, reward) -> Curate:
    """K-wise curation: each training point is the pick of k fresh candidates, P(pick) ~ exp(reward).

    k: an integer >= 1 (static: the engine generates k * n_samples candidates); k = 1 is no curation.
    reward: one number per state (Categorical; an array, traced, one reward vector for all chains),
      fn(ctx, x) -> [n], or the name of one registered with jc.stages.register_reward.
    """
    k = _checks.positive_int("k", k)
    if isinstance(reward, str):
        reward = scores_lib.as_reward(reward)
    if callable(reward):
        return Curate(None, k, reward)
    table = np.asarray(reward, dtype=float) if isinstance(reward, (list, tuple, np.ndarray)) else reward
    if not _checks.is_concrete(table) or np.ndim(table) != 1:
        raise ValueError(f"reward must be one number per state (a 1-D array) or a function (ctx, x) -> [n], "
                         f"got {reward!r}")
    if not np.all(np.isfinite(np.asarray(table, dtype=float))):
        raise ValueError(f"reward must be finite numbers, got {np.asarray(table).tolist()}")
    return Curate(jnp.asarray(table, jnp.result_type(float)), k, None)


# ---------------------------------------------------------------- correct
CORRECTIONS = Registry("correction")


def register_correction(name: str):
    """Decorator: a correction named in TOML (correct's fn): fn(ctx, x) -> points shaped like x."""
    return CORRECTIONS.register(name)


@stage(static=("fn",))
class Correct:
    """x -> x + strength (fn(ctx, x) - x): strength 0 leaves points alone, 1 replaces them by fn(ctx, x)."""

    strength: Any = dataclasses.field(metadata={"toml": "share"})
    fn: Any = dataclasses.field(metadata={"toml": CORRECTIONS})
    name = "correct"

    def init(self, real, ctx):
        out = jax.eval_shape(lambda x: self.fn(ctx, x), real)
        want = jax.eval_shape(lambda x: x, real)
        if jax.tree_util.tree_structure(out) != jax.tree_util.tree_structure(want) or any(
                o.shape != w.shape for o, w in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(want))):
            raise ValueError(f"correct: fn must return points shaped like its input {want}, got {out}")
        if not all(jnp.issubdtype(w.dtype, jnp.floating) for w in jax.tree_util.tree_leaves(want)):
            raise ValueError("correct needs real-valued points (moving a point part of the way needs a continuum)")
        return ()

    def update(self, key, state, batch, ctx):
        target = self.fn(ctx, batch.x)
        x = jax.tree_util.tree_map(lambda a, b: a + self.strength * (b - a).astype(a.dtype), batch.x, target)
        return state, batch._replace(x=x)


@register_correction("gaussian_to_source")
def gaussian_to_source(ctx, x):
    """The idealised corrector for the Gaussian family: the optimal-transport map onto the source.

    The current model generates N(mean, lam cov); T(x) = mu* + A (x - mean) with
    A = S^(-1/2) (S^(1/2) Sigma* S^(1/2))^(1/2) S^(-1/2), S = lam cov, carries it onto the source
    N(mu*, Sigma*) (in 1-D A = sigma* / sigma). x + strength (T(x) - x) then follows the
    Wasserstein geodesic: corrected points are exactly N((1 - s) mean + s mu*, ((1 - s) sigma + s sigma*)^2)
    in 1-D (jc.theory.corrected_gaussian_moments).
    """
    source = ctx.source.params
    if source is None or not hasattr(source, "cov"):
        raise ValueError("gaussian_to_source needs a Gaussian family and its true distribution as the source")
    model = ctx.params
    scale = getattr(ctx.family, "lam", 1.0) * model.cov
    root, inv_root = _sqrt_and_inverse_sqrt(scale)
    middle, _ = _sqrt_and_inverse_sqrt(root @ source.cov @ root)
    a = inv_root @ middle @ inv_root
    return source.mean + (x - model.mean) @ a.T


def _sqrt_and_inverse_sqrt(matrix):
    """Symmetric square root and its pseudo-inverse (0 on a null direction: a collapsed model maps to the mean)."""
    values, vectors = jnp.linalg.eigh(0.5 * (matrix + matrix.T))
    values = jnp.maximum(values, 0.0)
    root = jnp.sqrt(values)
    inv = jnp.where(root > 0, 1.0 / jnp.where(root > 0, root, 1.0), 0.0)
    return (vectors * root) @ vectors.T, (vectors * inv) @ vectors.T


@register_stage("correct")
def correct(fn, strength) -> Correct:
    """Move each synthetic point toward fn(ctx, x) by `strength` in [0, 1] (scalar or one per chain).

    fn: "gaussian_to_source" (the idealised corrector of Gillman et al. for the Gaussian family:
      the optimal-transport map onto the true distribution), another name registered with
      jc.stages.register_correction, or fn(ctx, x) -> points like x.
    """
    if isinstance(fn, str):
        if fn not in CORRECTIONS:
            raise ValueError(f"fn must be one of {sorted(CORRECTIONS)} or a function (ctx, x) -> x, got {fn!r}")
        fn = CORRECTIONS[fn]
    if not callable(fn):
        raise ValueError(f"fn must be one of {sorted(CORRECTIONS)} or a function (ctx, x) -> x, got {fn!r}")
    return Correct(number("strength", strength, 0.0, 1.0), fn)
