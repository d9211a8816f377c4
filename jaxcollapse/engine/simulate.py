"""simulate(): the whole run in one call (a host loop over compiled chunks of generations)."""
from __future__ import annotations

import time
from typing import Callable, Sequence

from jaxcollapse import _checks
from jaxcollapse.engine.program import ChainProgram
from jaxcollapse.engine.result import Result


def simulate(key, family, source, *, n_chains: int, n_generations: int, n_samples: int,
             regime=None, record=None, snapshot_at: Sequence[int] = (), chunk_size: int | None = None,
             progress: Callable[[int, int, float], None] | None = None, max_pool_bytes: int | None = None,
             devices=None) -> Result:
    """Run n_chains independent collapse chains of n_generations refits each.

    Args:
      key: a JAX PRNG key (jax.random.key or PRNGKey).
      family: Gaussian(...), Categorical(...), GMM(...), VAE(...).
      source: the true distribution (family.make_params(...)) or a real data array [n, ...].
      n_samples: points drawn per generation (M).
      regime: replace() (default), accumulate(), accumulate_subsample(), keep_real(f), fresh_real(f).
      record: None (params and all metrics), names of params/metrics to keep, or fn(params) -> dict.
      snapshot_at: generations whose fresh training points are stored.
      chunk_size: generations per compiled chunk (default: all in one); results do not depend on it.
      progress: called as progress(generations_done, n_generations, seconds) between chunks.
      devices: where the chain axis lives: None (all devices, of every process after
        jax.distributed.initialize), a count, a list of jax.Device, or a Mesh with axis "chains".
        It is sharded with NamedSharding(mesh, P("chains")); n_chains not divisible by the
        device count is padded with copies of the last chain, then trimmed. Results do not
        depend on it.

    Examples:
      >>> import jax, jaxcollapse as jc
      >>> fam = jc.Gaussian(dim=1, ddof=1)
      >>> src = fam.make_params(mean=[0.0], cov=[[1.0]])
      >>> res = jc.simulate(jax.random.key(0), fam, src, n_chains=8, n_generations=5, n_samples=20)
      >>> res.params.cov.shape
      (8, 6, 1, 1)
    """
    program = ChainProgram(family, source, n_chains=n_chains, n_generations=n_generations, n_samples=n_samples,
                           regime=regime, record=record, snapshot_at=snapshot_at, max_pool_bytes=max_pool_bytes,
                           devices=devices)
    chunk = n_generations if chunk_size is None else _checks.positive_int("chunk_size", chunk_size)
    chunk = min(chunk, max(n_generations, 1))
    began = time.perf_counter()
    state, first = program.start(key)
    chunks = [first]
    while state.generation < n_generations:
        state, records = program.advance(state, chunk)
        chunks.append(records)
        if progress is not None:
            progress(state.generation, n_generations, time.perf_counter() - began)
    return program.result(state, chunks, time.perf_counter() - began)
