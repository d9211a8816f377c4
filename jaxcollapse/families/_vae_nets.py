"""Encoder and decoder networks of the VAE family (flax linen, used functionally via init/apply)."""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def _halved(size: tuple[int, int], times: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 SAME convolution: [size, ceil(size/2), ...]."""
    sizes = [tuple(size)]
    for _ in range(times):
        sizes.append(tuple(-(-s // 2) for s in sizes[-1]))
    return sizes


class Encoder(nn.Module):
    """x [b, *image_shape] -> (mean [b, latent_dim], std [b, latent_dim]) of q(z | x)."""

    latent_dim: int
    hidden: tuple[int, ...]
    architecture: str  # "mlp" | "conv"

    @nn.compact
    def __call__(self, x):
        batch = x.shape[0]
        if self.architecture == "conv":
            h = x[..., None]  # one channel
            for width in self.hidden:
                h = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), padding="SAME")(h))
            h = h.reshape(batch, -1)
        else:
            h = x.reshape(batch, -1)
            for width in self.hidden:
                h = nn.relu(nn.Dense(width)(h))
        out = nn.Dense(2 * self.latent_dim)(h)
        mean, raw_std = jnp.split(out, 2, axis=-1)
        # softplus keeps std positive without exp's overflow; the floor keeps log std finite
        return mean, nn.softplus(raw_std) + 1e-4


class Decoder(nn.Module):
    """z [b, latent_dim] -> per-pixel output [b, *image_shape] (Bernoulli logits or Gaussian means)."""

    image_shape: tuple[int, ...]
    hidden: tuple[int, ...]
    architecture: str

    @nn.compact
    def __call__(self, z):
        batch = z.shape[0]
        if self.architecture == "conv":
            sizes = _halved(self.image_shape, len(self.hidden))
            (h0, w0) = sizes[-1]
            h = nn.relu(nn.Dense(h0 * w0 * self.hidden[-1])(z)).reshape(batch, h0, w0, self.hidden[-1])
            widths = list(reversed(self.hidden))[1:] + [1]
            targets = list(reversed(sizes))[1:]
            for i, (width, (th, tw)) in enumerate(zip(widths, targets)):
                h = nn.ConvTranspose(width, (3, 3), strides=(2, 2), padding="SAME")(h)
                h = h[:, :th, :tw, :]  # odd sizes: 2 * ceil(s/2) may exceed s by one
                if i < len(widths) - 1:
                    h = nn.relu(h)
            return h[..., 0]
        h = z
        for width in reversed(self.hidden):
            h = nn.relu(nn.Dense(width)(h))
        out = nn.Dense(math.prod(self.image_shape))(h)
        return out.reshape((batch,) + tuple(self.image_shape))


def init_networks(key, latent_dim, hidden, architecture, image_shape):
    """Fresh (encoder_params, decoder_params) for a batch of one; pure, so it vmaps over keys."""
    enc = Encoder(latent_dim, tuple(hidden), architecture)
    dec = Decoder(tuple(image_shape), tuple(hidden), architecture)
    k_enc, k_dec = jax.random.split(key)
    x0 = jnp.zeros((1,) + tuple(image_shape), jnp.result_type(float))
    z0 = jnp.zeros((1, latent_dim), jnp.result_type(float))
    return enc, dec, enc.init(k_enc, x0)["params"], dec.init(k_dec, z0)["params"]
