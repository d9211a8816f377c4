"""The small records every part of jaxcollapse passes around (NamedTuples: pytrees, no behaviour).

    FitInfo      per-fit flags, recorded per chain and generation
    Source       the real side of a study: the true distribution, a real data pool, held-out data
    TrainingSet  what a generation is fitted on: weighted points, or sufficient statistics
    Context      what a pipeline stage may look at: the family, the current model, the source
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class FitInfo(NamedTuple):
    """Per-fit diagnostics: flags, never exceptions (the engine records them per chain and generation)."""

    n_iter: jax.Array      # iterations used (1 for closed-form fits)
    converged: jax.Array   # bool
    log_lik: jax.Array     # final mean weighted log-likelihood of the training set (nan if not computed)
    finite: jax.Array      # bool: every parameter is finite


class Source(NamedTuple):
    """The real side of a study.

    params: the true distribution (real data is drawn from it), or None.
    data: a real data pool, points [n_data, ...] (real data is subsampled from it), or None.
    heldout: real points [n_heldout, ...] that metrics score and training never sees, or None.
        A parametric source gets one per chain, drawn from the chain's key (family.heldout_size).
    """

    params: Any = None
    data: Any = None
    heldout: Any = None


class TrainingSet(NamedTuple):
    """Weighted points (x, w) or sufficient statistics; the engine fits whichever is set.

    x: points [n, ...] (a pytree of arrays for (x, y) pairs or token blocks); w: weights [n],
    0 = not in the training set (shapes stay static: a dropped point keeps its slot).
    """

    x: Any = None
    w: Any = None
    stats: Any = None


class Context(NamedTuple):
    """What a stage sees in one generation of one chain (all traced except the static ints)."""

    family: Any          # the family object
    params: Any          # the current model: the one whose samples form this generation's batch
    source: Source       # the real side (held-out data included)
    generation: Any      # int32 generation being formed (1, 2, ...; 0 in init)
    n_generations: int   # static
    n_samples: int       # static: points per training set
    real_key: Any        # this generation's key for fresh real data (see draw_real)

    def draw_real(self, n: int):
        """n fresh real points: from the true distribution, or a uniform subsample of the real pool.

        Drawn with this generation's real key: every call in one generation gives the same sample.
        """
        return draw_real(self.family, self.source, self.real_key, n)


def draw_real(family, source: Source, key, n: int):
    if source.params is not None:
        return family.sample(key, source.params, n)
    size = n_points(source.data)
    index = jax.random.choice(key, size, (n,), replace=False)
    return take(source.data, index)


# ---- points may be pytrees ((x, y) pairs, token blocks): a few helpers that treat them as one array
def n_points(x) -> int:
    return jax.tree_util.tree_leaves(x)[0].shape[0]


def take(x, index):
    return jax.tree_util.tree_map(lambda a: a[index], x)


def concat(a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.concatenate([u, v], axis=0), a, b)


def weights(n: int):
    return jnp.ones(n, jnp.result_type(float))
