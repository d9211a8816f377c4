"""Metrics of VAE chains that need more than one generation's parameters, or real held-out data.

The paper's metric (Shumailov et al., Fig. on VAEs): encode the images generated at generation g
with the *generation-0* encoder and look at the density of the latent means; its std fell
0.674 -> 0.433 over generations 0..4 on MNIST. The family's ``metrics`` sees one generation's
parameters only, so this lives here, as pure functions of recorded parameter histories.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_KEY_SEED = 20231125


def mean_pairwise_distance(x) -> jax.Array:
    """Mean Euclidean distance between distinct pairs of images x [n, ...] (diversity)."""
    flat = x.reshape(x.shape[0], -1)
    sq = jnp.sum(flat**2, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T, 0.0)
    n = flat.shape[0]
    off = 1.0 - jnp.eye(n, dtype=flat.dtype)
    # sqrt of exact zeros on the diagonal has an infinite gradient; mask before the root
    dist = jnp.sqrt(jnp.where(off > 0, d2, 1.0)) * off
    return jnp.sum(dist) / (n * (n - 1))


def nearest_labels(generated, real, labels) -> jax.Array:
    """Label of the nearest real image (L2) for each generated image [n]."""
    g = generated.reshape(generated.shape[0], -1)
    r = real.reshape(real.shape[0], -1)
    d2 = jnp.sum(g**2, 1)[:, None] + jnp.sum(r**2, 1)[None, :] - 2.0 * g @ r.T
    return jnp.asarray(labels)[jnp.argmin(d2, axis=1)]


def n_distinct_nearest(generated, real, labels, n_classes: int = 10) -> jax.Array:
    """How many classes appear among the nearest real images of the generated ones."""
    hits = jnp.zeros(n_classes, bool).at[nearest_labels(generated, real, labels)].set(True)
    return jnp.sum(hits)


def heldout_elbo(fam, params, x, key=None, n_draws: int = 4) -> jax.Array:
    """Mean ELBO per image of held-out real images x under one generation's params."""
    key = jax.random.key(_KEY_SEED) if key is None else key
    return jnp.mean(fam.elbo(params, key, x, n_draws=n_draws))


def gen0_latents(fam, history, key, n_images: int):
    """Latent means, under the generation-0 encoder, of images generated at every generation.

    history: one chain's params with a leading generation axis [G+1] (index 0 = generation 0).
    Returns latent means [G+1, n_images, latent_dim]. The same key is used at every generation
    (common random numbers), so differences between generations are the models', not the noise.
    """
    encoder0 = jax.tree_util.tree_map(lambda a: a[0], history.encoder)

    def one(params_g):
        images = fam.generate(key, params_g, n_images)
        mean, _ = fam._encoder().apply({"params": encoder0}, images)
        return mean

    return jax.lax.map(one, history)


def gen0_latent_stats(fam, history, key, n_images: int) -> dict:
    """Mean and std (pooled over images and latent dims) of ``gen0_latents``, each [G+1]."""
    means = gen0_latents(fam, history, key, n_images)
    flat = means.reshape(means.shape[0], -1)
    return {"latent_mean": jnp.mean(flat, axis=1), "latent_std": jnp.std(flat, axis=1)}
