"""The GMM's EM loop as one native call per batch of chains on a CPU (em_loop.cc), behind em/loop.em."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse.native import build

COVARIANCE_CODES = {"full": 0, "diag": 1, "spherical": 2}
MAX_DIM = 3          # em_loop.cc is instantiated for d = 1-3 and K = 1-4
MAX_COMPONENTS = 4


def usable(n_components: int, dim: int, dtype) -> bool:
    """Whether em/loop.em runs natively for this shape: CPU backend, d <= 3, K <= 4, float32/64, built."""
    return (jax.default_backend() == "cpu" and 1 <= dim <= MAX_DIM and 1 <= n_components <= MAX_COMPONENTS
            and jnp.dtype(dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)) and build.wanted())


def em_loop(params, xt, w, fb, tol, reg_covar, *, max_iter: int, covariance: str):
    """EM from params on xt [..., d, n] (leading axes: chains) to |change| < tol or max_iter M-steps, each chain
    alone; ((weights, means, covs), n_iter int32, converged bool) as em/loop.EMResult's fields."""
    dtype = xt.dtype
    batch = w.shape[:-1]
    name = "jaxcollapse_em_loop_f32" if dtype == jnp.float32 else "jaxcollapse_em_loop_f64"
    shapes = [jax.ShapeDtypeStruct(a.shape, dtype) for a in params] + [jax.ShapeDtypeStruct(batch, jnp.int32)] * 2
    call = jax.ffi.ffi_call(name, shapes, vmap_method="broadcast_all")
    weights, means, covs, n_iter, converged = call(
        *(a.astype(dtype) for a in params), xt, w, fb.covs, fb.offsets, jnp.broadcast_to(tol, batch).astype(dtype),
        jnp.broadcast_to(reg_covar, batch).astype(dtype), max_iter=np.int64(max_iter),
        covariance=np.int64(COVARIANCE_CODES[covariance]))
    return (weights, means, covs), n_iter, converged != 0
