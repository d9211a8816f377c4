"""How a language model writes a block from a prompt: sampling (temperature, top-k, repetition
penalty) or beam search (the paper's 5 beams), one position at a time through a key/value cache.

Both are pure and shape-static (a lax.scan over positions; the prompt's positions are fed, not
chosen), so they vmap over chains. ``step(token [m], pos, cache) -> (logits [m, V], cache)`` is the
model; ``prompts`` [n, prompt_length] the real tokens each block starts with.

Repetition penalty (Keskar et al. 2019, as Hugging Face applies it): the score s of a token already
in the block (prompt included) becomes s / penalty if s > 0 else s * penalty (1: off). Sampling
applies it to the logits, then temperature, then top-k; beam search to the log-probabilities.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class SamplerSettings(NamedTuple):
    """Traced numbers (scalars): a sweep over them does not recompile."""

    temperature: Any = 1.0
    top_k: Any = 0                  # 0: off
    repetition_penalty: Any = 1.0   # 1: off


def penalise(scores, seen, penalty):
    """Hugging Face's repetition penalty on scores [m, V] of tokens seen [m, V] (bool)."""
    penalised = jnp.where(scores > 0, scores / penalty, scores * penalty)
    return jnp.where(seen, penalised, scores)


def top_k_filter(logits, k):
    """Keep the k largest logits of each row (ties at the k-th kept), -inf elsewhere; k = 0 keeps all."""
    k = jnp.asarray(k, jnp.int32)
    ranked = jnp.sort(logits, axis=-1)                     # ascending: the k-th largest sits at V - k
    kth = jax.lax.dynamic_slice_in_dim(ranked, logits.shape[-1] - jnp.clip(k, 1, logits.shape[-1]), 1, axis=-1)
    return jnp.where((jnp.asarray(k) <= 0) | (logits >= kth), logits, -jnp.inf)


def sample_blocks(key, step: Callable, cache, prompts, block: int, settings: SamplerSettings):
    """Blocks [n, block]: each prompt [prompt_length] continued by draws from the processed logits."""
    n, prompt_length = prompts.shape
    tokens = jnp.zeros((n, block), jnp.int32).at[:, :prompt_length].set(prompts)

    def body(carry, inputs):
        tokens, cache, seen = carry
        pos, k = inputs
        logits, cache = step(tokens[:, pos], pos, cache)
        seen = seen | jax.nn.one_hot(tokens[:, pos], logits.shape[-1], dtype=bool)
        logits = penalise(logits, seen, settings.repetition_penalty) / settings.temperature
        drawn = jax.random.categorical(k, top_k_filter(logits, settings.top_k), axis=-1).astype(jnp.int32)
        nxt = jnp.where(pos + 1 < prompt_length, tokens[:, pos + 1], drawn)
        return (jax.lax.dynamic_update_slice_in_dim(tokens, nxt[:, None], pos + 1, axis=1), cache, seen), None

    seen = _seen_shape(step, cache, tokens)
    positions = jnp.arange(block - 1)
    (tokens, _, _), _ = jax.lax.scan(body, (tokens, cache, seen), (positions, jax.random.split(key, block - 1)))
    return tokens


def beam_blocks(step: Callable, cache, prompts, block: int, n_beams: int, repetition_penalty):
    """Blocks [n, block]: each prompt continued by beam search (n_beams beams, no end token, so the
    block is the beam of highest total log-probability; deterministic)."""
    n, prompt_length = prompts.shape
    tokens = jnp.zeros((n, n_beams, block), jnp.int32).at[:, :, :prompt_length].set(prompts[:, None])
    cache = jax.tree_util.tree_map(lambda c: jnp.repeat(c, n_beams, axis=0), cache)
    # all beams start as one: the others at -inf until the first choice spreads them
    scores = jnp.full((n, n_beams), -jnp.inf).at[:, 0].set(0.0)
    beams = jnp.arange(n_beams)

    def body(carry, pos):
        tokens, cache, seen, scores = carry
        logits, cache = step(tokens[:, :, pos].reshape(-1), pos, cache)
        vocab = logits.shape[-1]
        seen = seen | jax.nn.one_hot(tokens[:, :, pos], vocab, dtype=bool)
        logp = penalise(jax.nn.log_softmax(logits).reshape(n, n_beams, vocab), seen, repetition_penalty)
        best, index = jax.lax.top_k((scores[..., None] + logp).reshape(n, n_beams * vocab), n_beams)
        forced = pos + 1 < prompt_length
        parent = jnp.where(forced, beams[None], index // vocab)
        chosen = jnp.where(forced, tokens[:, :, pos + 1], (index % vocab).astype(jnp.int32))
        scores = jnp.where(forced, scores, best)
        tokens = jnp.take_along_axis(tokens, parent[..., None], axis=1)
        seen = jnp.take_along_axis(seen, parent[..., None], axis=1)
        cache = jax.tree_util.tree_map(lambda c: _gather_beams(c, parent), cache)
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, chosen[..., None], pos + 1, axis=2)
        return (tokens, cache, seen, scores), None

    probe = jax.eval_shape(lambda: step(tokens[:, :, 0].reshape(-1), 0, cache)[0])
    seen = jnp.zeros((n, n_beams, probe.shape[-1]), bool)
    (tokens, _, _, scores), _ = jax.lax.scan(body, (tokens, cache, seen, scores), jnp.arange(block - 1))
    best = jnp.argmax(scores, axis=1)
    return jnp.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0]


def _gather_beams(c, parent):
    n, n_beams = parent.shape
    c = c.reshape((n, n_beams) + c.shape[1:])
    picked = jnp.take_along_axis(c, parent.reshape(parent.shape + (1,) * (c.ndim - 2)), axis=1)
    return picked.reshape((n * n_beams,) + c.shape[2:])


def _seen_shape(step, cache, tokens):
    probe = jax.eval_shape(lambda: step(tokens[:, 0], 0, cache)[0])
    return jnp.zeros(probe.shape, bool)
