"""Variational auto-encoder family (Shumailov et al.'s VAE setting): flax linen networks used
functionally, optax Adam, training as one ``lax.scan`` over minibatch steps (families/_training.py,
shared with the Transformer), so whole fits vmap.

Generation g+1 is trained on what generation g *generates*: decoder means of z ~ N(0, I)
(``next_data="mean"``, as in the paper) or draws from the likelihood (``"sample"``).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax

from jaxcollapse import _checks, vae_metrics
from jaxcollapse.families import _training, _vae_nets
from jaxcollapse.families.base import FamilyBase, all_finite, compiled_when_eager, family, register
from jaxcollapse.types import FitInfo, Source

# log_prob takes no key (the family protocol); its ELBO's z-draws use this fixed one (common random
# numbers: the same z-noise for every model scored, so differences are not noise)
_EVAL_KEY_SEED = 20231125


class VAEParams(NamedTuple):
    encoder: dict  # flax params of q(z | x)
    decoder: dict  # flax params of p(x | z)


@register("vae")
@family(static=("latent_dim", "hidden", "architecture", "likelihood", "n_steps", "batch_size",
                "next_data", "init", "image_shape", "n_eval"))
class VAE(FamilyBase):
    """A VAE on images [h, w] (or vectors [d]) with values in [0, 1].

    latent_dim: size of z; prior N(0, I).
    hidden: layer widths, e.g. (128,) for the MLP or channel counts (16, 32) for the conv net
        (stride-2 3x3 convolutions; the decoder mirrors the encoder).
    architecture: "mlp" | "conv" (conv needs a 2-D image_shape).
    likelihood: "bernoulli" (pixel logits; the paper's cross-entropy, data must lie in [0, 1])
        | "gaussian" (pixel means, fixed std ``obs_std``).
    n_steps, batch_size: Adam steps per generation and minibatch size (minibatches are drawn
        with replacement, with probability proportional to the training weights w).
    learning_rate: Adam step size (traced: a sweep over it does not recompile).
    next_data: "mean" feeds decoder means of z ~ N(0, I) to the next generation (the paper);
        "sample" feeds draws from the likelihood.
    init: "scratch" retrains from a fresh initialisation every generation (the paper);
        "previous" warm-starts from the previous generation's parameters.
    image_shape: per-image shape, (8, 8) for scikit-learn's digits, (28, 28) for MNIST.
    obs_std: the Gaussian likelihood's pixel std (traced; unused for Bernoulli).
    n_eval: number of generated images (and of source images, at most) used by ``metrics``.

    Examples:
        >>> import jax, jaxcollapse as jc
        >>> from jaxcollapse.datasets import load_digits
        >>> train, heldout = load_digits(seed=0)
        >>> fam = jc.VAE(latent_dim=4, hidden=(64,), n_steps=50, batch_size=32)
        >>> ref = fam.check_source(train)
        >>> x = ref.data[:256]
        >>> params, info = fam.fit(jax.random.key(0), x, jax.numpy.ones(256))
        >>> fam.generate(jax.random.key(1), params, 5).shape
        (5, 8, 8)
    """

    latent_dim: int = 8
    hidden: tuple[int, ...] = (128,)
    architecture: str = "mlp"
    likelihood: str = "bernoulli"
    n_steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    next_data: str = "mean"
    init: str = "scratch"
    image_shape: tuple[int, ...] = (8, 8)
    obs_std: float = 0.1
    n_eval: int = 512

    has_stats = False
    heldout_size = 0

    def __post_init__(self):
        _checks.positive_int("latent_dim", self.latent_dim)
        if isinstance(self.hidden, (int, np.integer)) and not isinstance(self.hidden, bool):
            object.__setattr__(self, "hidden", (int(self.hidden),))
        if not isinstance(self.hidden, (tuple, list)) or len(self.hidden) == 0:
            raise ValueError(f"hidden must be a non-empty tuple of positive layer widths, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(_checks.positive_int("hidden", h) for h in self.hidden))
        if self.architecture not in ("mlp", "conv"):
            raise ValueError(f"architecture must be 'mlp' or 'conv', got {self.architecture!r}")
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {self.likelihood!r}")
        _checks.positive_int("n_steps", self.n_steps)
        _checks.positive_int("batch_size", self.batch_size)
        _checks.positive_int("n_eval", self.n_eval)
        if self.next_data not in ("mean", "sample"):
            raise ValueError(f"next_data must be 'mean' or 'sample', got {self.next_data!r}")
        if self.init not in ("scratch", "previous"):
            raise ValueError(f"init must be 'scratch' or 'previous', got {self.init!r}")
        if isinstance(self.image_shape, (int, np.integer)) and not isinstance(self.image_shape, bool):
            object.__setattr__(self, "image_shape", (int(self.image_shape),))
        if not isinstance(self.image_shape, (tuple, list)) or len(self.image_shape) not in (1, 2):
            raise ValueError(f"image_shape must be (h, w) or (d,), got {self.image_shape!r}")
        object.__setattr__(self, "image_shape",
                           tuple(_checks.positive_int("image_shape", s) for s in self.image_shape))
        if self.architecture == "conv" and len(self.image_shape) != 2:
            raise ValueError(f"architecture='conv' needs a 2-D image_shape (h, w), got {self.image_shape!r}")
        _checks.number_in("learning_rate", self.learning_rate, 0.0, np.inf, low_open=True)
        _checks.number_in("obs_std", self.obs_std, 0.0, np.inf, low_open=True)

    @property
    def point_shape(self) -> tuple[int, ...]:
        return self.image_shape

    @property
    def point_dtype(self):
        return jnp.result_type(float)

    # ---- host-side -------------------------------------------------------------------
    def check_data(self, name: str, data) -> np.ndarray:
        """Validate an image array [n, *image_shape]; Bernoulli needs values in [0, 1]."""
        arr = _checks.finite_array(name, data)
        want = 1 + len(self.image_shape)
        if arr.ndim != want:
            raise ValueError(f"{name} must have rank {want} [n, {', '.join(map(str, self.image_shape))}] "
                             f"(image_shape={self.image_shape}), got shape {arr.shape}")
        if arr.shape[1:] != self.image_shape:
            raise ValueError(f"{name} must have shape [n, {', '.join(map(str, self.image_shape))}] "
                             f"(set image_shape={arr.shape[1:]} to match the data), got {arr.shape}")
        if arr.shape[0] < 1:
            raise ValueError(f"{name} must hold at least one image, got shape {arr.shape}")
        if self.likelihood == "bernoulli" and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{name} values must lie in [0, 1] for likelihood='bernoulli', "
                             f"got range [{arr.min()}, {arr.max()}]")
        return arr

    def check_params(self, params):
        raise ValueError("source must be a real data array [n, *image_shape] (or a jc.Source of them); "
                         f"a VAE has no true parameters, got {type(params).__name__}")

    def check_settings(self, n_samples: int) -> None:
        _training.check_batch_fits(self.batch_size, n_samples, "images")

    # ---- networks ----------------------------------------------------------------------
    def _encoder(self):
        return _vae_nets.Encoder(self.latent_dim, self.hidden, self.architecture)

    def _decoder(self):
        return _vae_nets.Decoder(self.image_shape, self.hidden, self.architecture)

    def init_params(self, key) -> VAEParams:
        _, _, enc, dec = _vae_nets.init_networks(key, self.latent_dim, self.hidden, self.architecture,
                                                 self.image_shape)
        return VAEParams(enc, dec)

    def encode(self, params: VAEParams, x) -> tuple[jax.Array, jax.Array]:
        """Mean and std of q(z | x), each [n, latent_dim]."""
        return self._encoder().apply({"params": params.encoder}, x)

    def decode(self, params: VAEParams, z) -> jax.Array:
        """Decoder output [n, *image_shape]: Bernoulli logits or Gaussian means."""
        return self._decoder().apply({"params": params.decoder}, z)

    def _likelihood(self, out):
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out)
        return dist.Normal(out, self.obs_std)

    def _log_lik(self, out, x):
        if self.likelihood == "bernoulli":
            # the paper's cross-entropy, valid for grey levels too; numpyro's Bernoulli.log_prob
            # masks non-binary values to -inf, so it is written out here
            return -optax.sigmoid_binary_cross_entropy(out, x)
        return self._likelihood(out).log_prob(x)

    def _mean(self, out):
        return jax.nn.sigmoid(out) if self.likelihood == "bernoulli" else out

    # ---- pure, one chain ---------------------------------------------------------------
    def elbo(self, params: VAEParams, key, x, n_draws: int = 1) -> jax.Array:
        """ELBO per image [n] (nats), averaged over ``n_draws`` reparameterised z-draws.

        For Bernoulli on grey levels this is the paper's cross-entropy objective, a bound on
        log p(x) only for binary x.
        """
        mean, std = self.encode(params, x)
        eps = jax.random.normal(key, (n_draws,) + mean.shape, mean.dtype)
        z = mean + std * eps                                     # [k, n, latent]
        out = self.decode(params, z.reshape(-1, self.latent_dim))
        out = out.reshape((n_draws,) + x.shape)
        axes = tuple(range(2, out.ndim))
        rec = jnp.sum(self._log_lik(out, x[None]), axis=axes)  # [k, n]
        # KL(N(mean, std) || N(0, 1)) in closed form, summed over latent dims
        kl = 0.5 * jnp.sum(mean**2 + std**2 - 1.0 - 2.0 * jnp.log(std), axis=-1)
        return jnp.mean(rec, axis=0) - kl

    def sample(self, key, params: VAEParams, n: int) -> jax.Array:
        """Exact draws from the model: z ~ N(0, I), x ~ p(x | z)."""
        k_z, k_x = jax.random.split(key)
        z = jax.random.normal(k_z, (n, self.latent_dim), self.point_dtype)
        draw = self._likelihood(self.decode(params, z)).sample(k_x)
        return draw.astype(self.point_dtype)

    def generate(self, key, params: VAEParams, n: int, source: Source | None = None) -> jax.Array:
        """What the model hands the next generation: decoder means ("mean") or likelihood draws."""
        if self.next_data == "sample":
            return self.sample(key, params, n)
        z = jax.random.normal(key, (n, self.latent_dim), self.point_dtype)
        return self._mean(self.decode(params, z))

    def log_prob(self, params: VAEParams, x) -> jax.Array:
        """ELBO per image [n], a lower bound on log p(x) (8 z-draws, fixed key: deterministic)."""
        return self.elbo(params, jax.random.key(_EVAL_KEY_SEED), x, n_draws=8)

    def fit_trace(self, key, x, w, init=None) -> tuple[VAEParams, FitInfo, jax.Array]:
        """Like ``fit``, also returning the minibatch ELBO trace [n_steps] (mean per image)."""
        k_init, k_train, k_eval = jax.random.split(key, 3)
        if self.init == "previous" and init is not None:
            params = init
        else:
            params = self.init_params(k_init)
        w = jnp.asarray(w, self.point_dtype)

        def loss(p, k, batch, batch_w):
            del batch_w  # minibatches are drawn in proportion to w, so each drawn image counts once
            return -jnp.mean(self.elbo(p, k, batch))

        params, losses = _training.train(loss, params, optax.adam(self.learning_rate), k_train, x, w,
                                         _training.weighted_draws(self.n_steps, self.batch_size))
        trace = -losses
        final = self.elbo(params, k_eval, x)
        log_lik = jnp.sum(w * final) / jnp.maximum(jnp.sum(w), 1e-30)
        finite = all_finite(params) & jnp.isfinite(log_lik)
        info = FitInfo(
            n_iter=jnp.asarray(self.n_steps, jnp.int32),
            converged=finite & _training.plateaued(losses),
            log_lik=log_lik,
            finite=finite,
        )
        return params, info, trace

    @compiled_when_eager
    def fit(self, key, x, w, init=None) -> tuple[VAEParams, FitInfo]:
        """Train for n_steps Adam steps; FitInfo.log_lik is the final weighted mean ELBO.

        ``converged`` means the run reached a plateau: the minibatch ELBO of the last tenth of the
        steps is not better than that of the tenth before it by more than 2 standard errors.
        """
        params, info, _ = self.fit_trace(key, x, w, init)
        return params, info

    def metrics(self, key, params: VAEParams, source: Source) -> dict:
        """Per-chain scalars: the diversity of generated images, and the ELBO of (up to n_eval) held-out
        real images (source.heldout) when the source has them. `key` is the chain's metrics key, the
        same every generation (common random numbers)."""
        out = {}
        generated = self.generate(jax.random.fold_in(key, 1), params, self.n_eval)
        out["diversity"] = vae_metrics.mean_pairwise_distance(generated)
        out["pixel_std"] = jnp.mean(jnp.std(generated, axis=0))
        if source.heldout is not None:
            real = source.heldout[: self.n_eval]
            elbo = self.elbo(params, key, real, n_draws=4)
            out["elbo_source"] = jnp.mean(elbo)
            out["nll_bound_source"] = -jnp.mean(elbo)  # nats per image, an upper bound on -log p(x)
        return out

