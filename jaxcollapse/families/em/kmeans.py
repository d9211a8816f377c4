"""k-means++ seeding and weighted Lloyd steps, in the transposed layout xt [d, n]."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcollapse.families.em.densities import UNROLL_DIM
from jaxcollapse.families.em.reductions import row_sums
from jaxcollapse.families.em.sampling import pick_by_weight


def sq_dist_t(xt, centres):
    """Squared distances [K, n] from centres [K, d] to points xt [d, n]."""
    return jnp.sum((xt[None, :, :] - centres[:, :, None]) ** 2, 1)


def nearest(xt, centres):
    """(squared distance [n] to the nearest centre, its index [n]; ties: lowest k).

    Up to UNROLL_DIM, per coordinate with a running minimum over the centres: an argmin over K
    (a two-output reduction) runs as scalar code on CPU."""
    K, d = centres.shape
    if d > UNROLL_DIM:
        d2 = sq_dist_t(xt, centres)
        return jnp.min(d2, 0), jnp.argmin(d2, 0).astype(jnp.int32)
    best, label = None, None
    for k in range(K):
        d2 = sum((xt[a] - centres[k, a]) ** 2 for a in range(d))
        if k == 0:
            best, label = d2, jnp.zeros(d2.shape, jnp.int32)
        else:
            closer = d2 < best
            best, label = jnp.where(closer, d2, best), jnp.where(closer, k, label)
    return best, label


def kmeans_plus_plus(key, xt, w, K: int):
    """k-means++ seeding (one candidate per step), weighted: P(pick n) proportional to w_n D_n^2."""
    keys = jax.random.split(key, K)
    first = pick_by_weight(keys[0], w)
    centres = jnp.zeros((K, xt.shape[0]), xt.dtype).at[0].set(xt[:, first])
    d2 = jnp.sum((xt - xt[:, first][:, None]) ** 2, 0)
    for k in range(1, K):
        # all remaining distances zero (collapsed data): pick by weight alone
        wd2 = w * d2
        chosen = pick_by_weight(keys[k], jnp.where(jnp.sum(wd2) > 0, wd2, w))
        centres = centres.at[k].set(xt[:, chosen])
        d2 = jnp.minimum(d2, jnp.sum((xt - xt[:, chosen][:, None]) ** 2, 0))
    return centres


def lloyd(centres, xt, w, n_iter: int):
    """n_iter weighted Lloyd iterations; an empty cluster keeps its centre."""
    K = centres.shape[0]
    d = xt.shape[0]

    def sums(c):
        """(counts [K], coordinate sums [K, d]) of the points nearest each centre (ties: lowest k)."""
        label = nearest(xt, c)[1]
        if d > UNROLL_DIM:
            member = jax.nn.one_hot(label, K, dtype=xt.dtype, axis=0) * w[None]
            return jnp.sum(member, 1), jnp.sum(member[:, None, :] * xt[None], 2)
        member = [jnp.where(label == k, w, 0.0) for k in range(K)]
        sums = row_sums([term for m in member for term in [m] + [m * xt[a] for a in range(d)]]).reshape(K, d + 1)
        return sums[:, 0], sums[:, 1:]

    def step(_, c):
        counts, total = sums(c)
        new = total / jnp.where(counts > 0, counts, 1.0)[:, None]
        return jnp.where((counts > 0)[:, None], new, c)

    return jax.lax.fori_loop(0, n_iter, step, centres)
