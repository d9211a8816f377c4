"""A small decoder-only Transformer language model on token blocks: the language chain of Shumailov
et al.'s third experiment with a network instead of counts (they fine-tuned OPT-125m; this one is
trained here, small enough for a CPU and many chains on a GPU).

Points are int32 token blocks [block], as the n-gram's (the same jc.Source of the shipped corpus:
load_text blocks as data, held-out blocks as heldout). The network (families/_transformer_net.py)
has a context of `block` tokens; position t predicts token t + 1, so a block's first token is
context only and block - 1 tokens are scored.

Training (families/_training.py, the loop the VAE shares): Adam over `epochs` epochs of shuffled
mini-batches of blocks, mean token cross-entropy weighted by the training weights; from a fresh
initialisation every generation (init="scratch"), from the previous generation's network
(init="previous": fine-tuning the last model), or from the generation-0 network every generation
(init="generation0": the paper's setup, where each generation fine-tunes the same pretrained model;
here the network trained on real data stands in for it).

Generation, the paper's setup: generated block i starts with the first `prompt_length` tokens of
real block i mod n_data of source.data and the model writes the rest, by sampling (temperature,
top_k, repetition_penalty; traced) or by beam search (decoding="beam", n_beams beams, the paper's
5 with repetition penalty 3.0). The continuations form the next training set.

The generation-0 model rides along in the params (TransformerParams.reference, set by the fit on
real data, handed on unchanged by every later fit), so each chain's `generated_perplexity` scores
its text under its own generation-0 model, as the paper's histograms do.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcollapse import _checks
from jaxcollapse.families import _decoding, _training
from jaxcollapse.families._transformer_net import DecoderLM, empty_cache, init_params
from jaxcollapse.families.base import FamilyBase, all_finite, compiled_when_eager, family, register
from jaxcollapse.families.ngram import TOKENIZERS, check_token_blocks
from jaxcollapse.types import FitInfo, Source

MAX_VOCAB = 46_340  # bigram ids v * V + u must fit in int32 (the support metric sorts them)
DECODINGS = ("sample", "beam")
INITS = ("scratch", "previous", "generation0")


class TransformerParams(NamedTuple):
    model: Any       # flax params of this generation's network
    reference: Any   # flax params of the chain's generation-0 network (scores generated text)


class ModelParams(NamedTuple):
    model: Any       # what a run records per generation: the network, not the reference again


@register("transformer")
@family(static=("vocab_size", "block", "d_model", "n_heads", "n_layers", "epochs", "batch_size", "init",
                "prompt_length", "decoding", "n_beams", "n_eval", "tokenizer"))
class Transformer(FamilyBase):
    """A decoder-only Transformer over `vocab_size` token ids; points are int32 blocks [block].

    vocab_size: V, token ids in [0, V).
    block: tokens per point, and the network's context.
    d_model, n_heads, n_layers: width (divisible by n_heads), attention heads, layers.
    epochs, batch_size: passes over the training set per generation, blocks per Adam step.
    learning_rate: Adam step size (traced).
    init: "scratch" (a fresh network every generation) | "previous" (fine-tune the previous one) |
        "generation0" (fine-tune the generation-0 network every generation, as the paper restarts
        from its pretrained model).
    prompt_length: real tokens that start each generated block (1 <= prompt_length < block).
    decoding: "sample" | "beam"; n_beams: beams of beam search.
    temperature, top_k (0: off), repetition_penalty (1: off): decoding settings (traced); beam
        search uses the repetition penalty only.
    n_eval: generated blocks scored per generation by the metrics.
    tokenizer: "char" | "word": how a study's [source] table tokenizes the shipped corpus.

    Examples:
      >>> import jax, jaxcollapse as jc
      >>> text = jc.datasets.load_text("char", block=16)
      >>> fam = jc.Transformer(vocab_size=len(text.vocab), block=16, d_model=16, n_heads=2, n_layers=1,
      ...                      epochs=1, batch_size=8, n_eval=4)
      >>> res = jc.simulate(jax.random.key(0), fam, jc.Source(data=text.train, heldout=text.heldout[:8]),
      ...                   n_chains=2, n_generations=2, n_samples=32, record=["heldout_perplexity"])
      >>> res.metrics["heldout_perplexity"].shape
      (2, 3)
    """

    vocab_size: int
    block: int = 64
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    init: str = "scratch"
    prompt_length: int = 1
    decoding: str = "sample"
    n_beams: int = 5
    temperature: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    n_eval: int = 32
    tokenizer: str = "word"

    has_stats = False
    heldout_size = 0

    def __post_init__(self):
        _checks.positive_int("vocab_size", self.vocab_size, minimum=2)
        if self.vocab_size > MAX_VOCAB:
            raise ValueError(f"vocab_size must be <= {MAX_VOCAB}, got {self.vocab_size}")
        _checks.positive_int("block", self.block, minimum=2)
        for name in ("d_model", "n_heads", "n_layers", "epochs", "batch_size", "n_eval"):
            _checks.positive_int(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {self.init!r}")
        _checks.positive_int("prompt_length", self.prompt_length)
        if self.prompt_length >= self.block:
            raise ValueError(f"prompt_length must be < block ({self.block}): the model must write at least one "
                             f"token, got {self.prompt_length}")
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(map(repr, DECODINGS))}, got {self.decoding!r}")
        _checks.positive_int("n_beams", self.n_beams)
        if self.decoding == "beam" and self.n_beams > self.vocab_size:
            raise ValueError(f"n_beams must be <= vocab_size ({self.vocab_size}), got {self.n_beams}")
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {', '.join(map(repr, TOKENIZERS))}, got {self.tokenizer!r}")
        _checks.number_in("learning_rate", self.learning_rate, 0.0, np.inf, low_open=True)
        _checks.number_in("temperature", self.temperature, 0.0, np.inf, low_open=True)
        _checks.number_in("repetition_penalty", self.repetition_penalty, 0.0, np.inf, low_open=True)
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
    def net(self) -> DecoderLM:
        return DecoderLM(self.vocab_size, self.block, self.d_model, self.n_heads, self.n_layers)

    # ---- host-side -----------------------------------------------------------------------
    def check_data(self, name: str, data):
        return check_token_blocks(name, data, self.block, self.vocab_size)

    def check_params(self, params):
        raise ValueError("source must be real token blocks [n, block] (or a jc.Source of them); a Transformer "
                         f"has no true parameters, got {type(params).__name__}")

    def check_settings(self, n_samples: int) -> None:
        _training.check_batch_fits(self.batch_size, n_samples, "blocks")

    def record_params(self, params: TransformerParams) -> ModelParams:
        return ModelParams(params.model)

    # ---- the model -------------------------------------------------------------------------
    def init_params(self, key):
        return init_params(self.net, key)

    def token_log_probs(self, model, x) -> jax.Array:
        """log p(x[:, t] | x[:, :t]) for t = 1, ..., block - 1: [n, block - 1]."""
        logits = self.net.apply({"params": model}, x)[:, :-1]
        return -optax.softmax_cross_entropy_with_integer_labels(logits, x[:, 1:])

    def log_prob(self, params: TransformerParams, x) -> jax.Array:
        """log p(x[1:] | x[0]) of each block [n] (the first token is context only)."""
        return jnp.sum(self.token_log_probs(params.model, x), axis=-1)

    @compiled_when_eager
    def fit(self, key, x, w, init=None) -> tuple[TransformerParams, FitInfo]:
        """Train; FitInfo.log_lik is the mean token log-likelihood of the last epoch's mini-batches (weighted)."""
        k_init, k_train = jax.random.split(key)
        if init is None or self.init == "scratch":
            model = self.init_params(k_init)
        else:
            model = init.model if self.init == "previous" else init.reference

        def loss(p, k, batch, batch_w):
            del k
            return _training.weighted_mean(-jnp.mean(self.token_log_probs(p, batch), axis=-1), batch_w)

        batches = _training.epochs(self.epochs, self.batch_size)
        model, losses = _training.train(loss, model, optax.adam(self.learning_rate), k_train, x,
                                        jnp.asarray(w, jnp.result_type(float)), batches)
        log_lik = -_training.mean_loss(losses[-(x.shape[0] // self.batch_size):])
        finite = all_finite(model) & jnp.isfinite(log_lik)
        info = FitInfo(n_iter=jnp.asarray(losses.shape[0], jnp.int32),
                       converged=finite & _training.plateaued(losses), log_lik=log_lik, finite=finite)
        return TransformerParams(model, model if init is None else init.reference), info

    # ---- writing -----------------------------------------------------------------------------
    def _write(self, key, model, prompts, decoding: str, settings: _decoding.SamplerSettings):
        net = self.net

        def step(token, pos, cache):
            return net.apply({"params": model}, token, pos, cache, method=DecoderLM.step)

        cache = empty_cache(net, prompts.shape[0], jnp.result_type(float))
        if decoding == "beam":
            return _decoding.beam_blocks(step, cache, prompts, self.block, self.n_beams, settings.repetition_penalty)
        return _decoding.sample_blocks(key, step, cache, prompts, self.block, settings)

    def _prompts(self, source: Source | None, n: int):
        if source is None or source.data is None:
            raise ValueError("the Transformer writes from real prompts: the source must hold real blocks (source.data)")
        return source.data[jnp.arange(n) % source.data.shape[0], : self.prompt_length]

    def generate(self, key, params: TransformerParams, n: int, source: Source | None = None) -> jax.Array:
        """n blocks the model writes (its decoding settings) from the first prompt_length tokens of real
        blocks 0, 1, ..., n - 1 (mod the pool)."""
        settings = _decoding.SamplerSettings(self.temperature, self.top_k, self.repetition_penalty)
        return self._write(key, params.model, self._prompts(source, n), self.decoding, settings)

    def sample(self, key, params: TransformerParams, n: int, source: Source | None = None) -> jax.Array:
        """n blocks drawn from the model itself (temperature 1, no truncation, no penalty) from the same
        real prompts as generate: the network has no law for a block's first tokens."""
        return self._write(key, params.model, self._prompts(source, n), "sample", _decoding.SamplerSettings())

    # ---- metrics -------------------------------------------------------------------------------
    def perplexity(self, model, x, first: int = 1) -> jax.Array:
        """Per-block perplexity [n] of tokens first, ..., block - 1 (the written ones for first = prompt_length)."""
        scored = self.token_log_probs(model, x)[:, first - 1:]
        return jnp.exp(-jnp.mean(scored, axis=-1))

    def metrics(self, key, params: TransformerParams, source: Source) -> dict:
        """heldout_perplexity: per-token perplexity of source.heldout (when there is one);
        generated_perplexity [n_eval]: per-block perplexity of the written tokens of n_eval blocks this
        model writes (prompted by the first real blocks; the metrics key, the same every generation),
        scored by the chain's generation-0 model; vocabulary_size, ngram_support_size: distinct tokens
        and distinct bigrams (written token and the one before) in those n_eval blocks."""
        out = {}
        if source.heldout is not None:
            out["heldout_perplexity"] = jnp.exp(-jnp.mean(self.token_log_probs(params.model, source.heldout)))
        written = self.generate(key, params, self.n_eval, source)
        out["generated_perplexity"] = self.perplexity(params.reference, written, self.prompt_length)
        tokens = written[:, self.prompt_length:]
        bigrams = written[:, self.prompt_length - 1:-1] * self.vocab_size + tokens
        out["vocabulary_size"] = _distinct(tokens)
        out["ngram_support_size"] = _distinct(bigrams)
        return out


def _distinct(ids) -> jax.Array:
    """How many distinct values an int array holds (a sort, no table of all possible values)."""
    ordered = jnp.sort(ids.reshape(-1))
    return (1 + jnp.sum(ordered[1:] != ordered[:-1])).astype(jnp.int32)
