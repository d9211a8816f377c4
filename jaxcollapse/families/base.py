"""What every model family provides to the chain engine.

A family is a frozen dataclass registered as a JAX pytree: fields that fix shapes
(dim, n_components, network sizes, ...) are static metadata, numbers that don't
(reg_covar, learning rate, sampling bias) are pytree leaves, so changing them does
not recompile. All methods are pure and take the key first.

Methods the engine calls (one chain, no chain axis; the engine vmaps):
    fit(key, x, w, init) -> (params, FitInfo)
        x [n, *point_shape], w [n] non-negative weights (0 = not in the training set).
        init is the previous generation's params (for warm starts) or None at generation 0.
    sample(key, params, n) -> x [n, *point_shape]       exact draws from the distribution
    generate(key, params, n) -> x                        what a trained model emits for the next
                                                         generation (sampling bias, decoder means);
                                                         defaults to sample
    log_prob(params, x) -> [n]
    metrics(params, reference) -> dict[str, array]       reference is a SourceRef
Optional, for O(1)-memory accumulation (has_stats = True):
    stats(x, w) -> stats pytree;  merge_stats(a, b) -> stats;  fit_stats(stats) -> (params, FitInfo)
Host-side (Python, before compiling):
    make_params(**arrays) -> params (validated)
    check_source(source) -> SourceRef (true params, or a real data array)
    check_settings(n_samples) raises ValueError
    point_shape, point_dtype
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class FitInfo(NamedTuple):
    """Per-fit diagnostics: flags, never exceptions (the engine records them per chain and generation)."""

    n_iter: jax.Array      # iterations used (1 for closed-form fits)
    converged: jax.Array   # bool
    log_lik: jax.Array     # final mean weighted log-likelihood of the training set (nan if not computed)
    finite: jax.Array      # bool: every parameter is finite


def closed_form_info(params: Any) -> FitInfo:
    return FitInfo(
        n_iter=jnp.asarray(1, jnp.int32),
        converged=jnp.asarray(True),
        log_lik=jnp.asarray(jnp.nan, jnp.result_type(float)),
        finite=all_finite(params),
    )


def all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


class SourceRef(NamedTuple):
    """The real source of a study: true parameters, a real data array, or both absent.

    params: the source distribution (real data is drawn from it), or None.
    data: a real data array [n_data, *point_shape] (real data is subsampled from it), or None.
    """

    params: Any = None
    data: Any = None


def family(static: tuple[str, ...]):
    """Decorator: frozen dataclass registered as a pytree; `static` names the shape-fixing fields."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        data = [n for n in names if n not in static]
        return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=list(static))

    return wrap
