"""The Transformer family's network: a small decoder-only language model (flax linen, used
functionally via init/apply). Pre-LayerNorm blocks of causal multi-head attention and a GELU MLP,
learned positions, the output layer tied to the token embedding (GPT-2's layout, small).

Two ways in: ``__call__(tokens [n, T]) -> logits [n, T, V]`` (training and scoring, causal mask),
and ``step(token [n], pos, cache) -> (logits [n, V], cache)``, one position at a time with a
key/value cache [n, block, heads, head_dim] per layer, so writing a block costs one forward pass.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

_INIT = nn.initializers.normal(0.02)  # GPT-2's: small logits at the start through the tied output layer


class Layer(nn.Module):
    d_model: int
    n_heads: int

    def setup(self):
        self.norm_attention = nn.LayerNorm()
        self.qkv = nn.Dense(3 * self.d_model, kernel_init=_INIT)
        self.project = nn.Dense(self.d_model, kernel_init=_INIT)
        self.norm_mlp = nn.LayerNorm()
        self.up = nn.Dense(4 * self.d_model, kernel_init=_INIT)
        self.down = nn.Dense(self.d_model, kernel_init=_INIT)

    def _heads(self, h):
        q, k, v = jnp.split(self.qkv(self.norm_attention(h)), 3, axis=-1)
        shape = h.shape[:-1] + (self.n_heads, self.d_model // self.n_heads)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def _finish(self, h, attended):
        h = h + self.project(attended.reshape(h.shape))
        return h + self.down(nn.gelu(self.up(self.norm_mlp(h))))

    def __call__(self, h):
        """h [n, T, d] -> [n, T, d], each position attending to itself and earlier ones."""
        q, k, v = self._heads(h)
        scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(q.shape[-1])
        causal = jnp.tril(jnp.ones((h.shape[1], h.shape[1]), bool))
        weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        return self._finish(h, jnp.einsum("nhqk,nkhd->nqhd", weights, v))

    def step(self, h, pos, cache):
        """h [n, d] at position pos; cache (keys, values) [n, block, heads, head_dim] -> (h, cache)."""
        q, k, v = self._heads(h)
        keys = jax.lax.dynamic_update_slice_in_dim(cache[0], k[:, None], pos, axis=1)
        values = jax.lax.dynamic_update_slice_in_dim(cache[1], v[:, None], pos, axis=1)
        scores = jnp.einsum("nhd,nkhd->nhk", q, keys) / math.sqrt(q.shape[-1])
        seen = jnp.arange(keys.shape[1]) <= pos
        weights = jax.nn.softmax(jnp.where(seen, scores, -jnp.inf), axis=-1)
        return self._finish(h, jnp.einsum("nhk,nkhd->nhd", weights, values)), (keys, values)


class DecoderLM(nn.Module):
    vocab_size: int
    block: int
    d_model: int
    n_heads: int
    n_layers: int

    def setup(self):
        self.embed = nn.Embed(self.vocab_size, self.d_model, embedding_init=_INIT)
        self.position = self.param("position", _INIT, (self.block, self.d_model))
        self.layers = [Layer(self.d_model, self.n_heads) for _ in range(self.n_layers)]
        self.norm = nn.LayerNorm()

    def __call__(self, tokens):
        """tokens [n, T <= block] -> next-token logits [n, T, V] (position t predicts token t + 1)."""
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        for layer in self.layers:
            h = layer(h)
        return self.embed.attend(self.norm(h))

    def step(self, token, pos, cache):
        """token [n] at position pos -> (logits [n, V] for position pos + 1, the updated cache)."""
        h = self.embed(token) + self.position[pos]
        updated = []
        for layer, layer_cache in zip(self.layers, cache):
            h, layer_cache = layer.step(h, pos, layer_cache)
            updated.append(layer_cache)
        return self.embed.attend(self.norm(h)), tuple(updated)


def init_params(net: DecoderLM, key):
    """Fresh params: weights N(0, 0.02^2) (GPT-2's), biases 0, LayerNorm scales 1.

    One normal draw cut into every weight, not flax's one draw per initialiser: the same law, less to
    compile (each draw is a threefry hash XLA compiles on its own).
    """
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, net.block), jnp.int32)))["params"]
    leaves, tree = jax.tree_util.tree_flatten_with_path(shapes)
    weights = [leaf for path, leaf in leaves if _kind(path) == "weight"]
    draws = 0.02 * jax.random.normal(key, (sum(math.prod(leaf.shape) for leaf in weights),), weights[0].dtype)
    out, start = [], 0
    for path, leaf in leaves:
        kind = _kind(path)
        if kind == "weight":
            size = math.prod(leaf.shape)
            out.append(draws[start:start + size].reshape(leaf.shape))
            start += size
        else:
            out.append(jnp.full(leaf.shape, 1.0 if kind == "scale" else 0.0, leaf.dtype))
    return jax.tree_util.tree_unflatten(tree, out)


def _kind(path) -> str:
    name = getattr(path[-1], "key", str(path[-1]))
    return name if name in ("bias", "scale") else "weight"


def empty_cache(net: DecoderLM, n: int, dtype):
    """The key/value cache of n sequences before their first token: per layer (keys, values), zeros."""
    shape = (n, net.block, net.n_heads, net.d_model // net.n_heads)
    return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(net.n_layers))
