"""Exact draws from a mixture, and inverse-CDF picks (one uniform per draw)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcollapse._prefix import first_exceeding, prefix_sums
from jaxcollapse.families.em.densities import MixtureParams, cholesky
from jaxcollapse.families.standard_normal import standard_normal, standard_uniform


def pick(key, cumulative, shape=()):
    """Indices drawn with probability proportional to the increments of `cumulative` [m] (inverse CDF).

    One uniform per draw (a categorical by Gumbel-max costs m per draw). Zero increments are
    never picked; a uniform that rounds up to the total takes the last positive increment.
    """
    # jax.random.uniform's draws, its hash written out (standard_normal.py: jax's rolled loop is slow on CPU)
    return inverse_cdf(standard_uniform(key, shape, cumulative.dtype) * cumulative[-1], cumulative)


def pick_by_weight(key, increments):
    """One index drawn with probability proportional to the nonnegative increments [m] (pick's uniform).

    For long weight vectors (k-means++ over the points): the running sums in blocks (prefix_sums: XLA:CPU's
    cumsum is slow); a zero increment is still never picked (first_exceeding)."""
    cumulative = prefix_sums(increments)
    return first_exceeding(cumulative, increments, standard_uniform(key, (), cumulative.dtype) * cumulative[-1])


def inverse_cdf(u, cumulative):
    """The first index whose cumulative exceeds u, at most the last positive increment's.

    That one is the first index reaching the (nondecreasing) total: counted, not an argmax (a
    two-output reduction, scalar code on CPU)."""
    last = jnp.sum(cumulative < cumulative[-1], -1)
    return jnp.minimum(jnp.sum(cumulative <= u[..., None], -1), last)


def sample_mixture(key, params: MixtureParams, n: int):
    """n exact draws [n, d] from the mixture: a component per point, then mean + L z.

    Draws n uniforms and n * d normals (numpyro's MixtureSameFamily draws every component for every
    point and a Gumbel categorical: ~2K times the random numbers, and LAPACK Cholesky calls).
    """
    K, d = params.means.shape
    k_comp, k_z = jax.random.split(key)
    comp = pick(k_comp, jnp.cumsum(params.weights), (n,))             # [n]
    z = standard_normal(k_z, (d, n), params.means.dtype)
    chol = cholesky(params.covs)
    if K > 8:  # a gather; below, K selects that XLA fuses with the rest
        return params.means[comp] + jnp.einsum("nde,en->nd", chol[comp], z)
    rows = []
    for a in range(d):
        row = jnp.zeros((n,), z.dtype)
        for k in range(K):
            value = params.means[k, a] + sum(chol[k, a, b] * z[b] for b in range(a + 1))
            row = jnp.where(comp == k, value, row)
        rows.append(row)
    return jnp.stack(rows, -1)
