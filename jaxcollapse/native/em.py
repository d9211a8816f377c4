"""The GMM's fit as one native call per batch of chains on a CPU (em_loop.cc): the EM loop behind em/loop.em,
and a fresh k-means++ fit behind GMM.fit."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse import settings
from jaxcollapse.families.em.densities import MixtureParams
from jaxcollapse.families.em.mstep import fallback
from jaxcollapse.families.standard_normal import standard_uniform
from jaxcollapse.native import build

COVARIANCE_CODES = {"full": 0, "diag": 1, "spherical": 2}
MAX_DIM = 3          # em_loop.cc is instantiated for d = 1-3 and K = 1-4
MAX_COMPONENTS = 4


def resolve(n_components: int, dim: int, dtype, requested: str | None = None) -> settings.Choice:
    """The GMM's EM backend for this shape under the em_backend setting, and why: native where the backend
    is a CPU, d <= 3, K <= 4, float32/64 and the library builds; XLA elsewhere. em_backend="native" is an
    error where the library does not build (never a silent fallback)."""
    requested = requested or settings.current().em_backend
    if requested == "xla":
        return settings.Choice("xla", "requested")
    backend = jax.default_backend()
    if backend != "cpu":
        return settings.Choice("xla", f"the backend is {backend}; the native EM runs on CPUs")
    if not 1 <= dim <= MAX_DIM or not 1 <= n_components <= MAX_COMPONENTS:
        return settings.Choice("xla", f"d = {dim}, K = {n_components}: the native EM has d <= {MAX_DIM}, "
                                      f"K <= {MAX_COMPONENTS}")
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        return settings.Choice("xla", f"dtype {jnp.dtype(dtype).name}: the native EM has float32 and float64")
    lib, why = build.library()
    if lib is None:
        if requested == "native":
            raise ValueError(f"em_backend = 'native' ({settings.source('em_backend')}) but the native build failed: {why}; "
                             f"allowed here: 'auto' or 'xla'")
        return settings.Choice("xla", f"native build failed: {why}")
    return settings.Choice("native", f"{'requested' if requested == 'native' else 'auto'}: CPU, d <= {MAX_DIM}, "
                                     f"K <= {MAX_COMPONENTS}, library built")


def usable(n_components: int, dim: int, dtype) -> bool:
    """Whether em/loop.em runs natively for this shape (resolve(); a run logs it: ChainProgram.announce)."""
    return resolve(n_components, dim, dtype).value == "native"


def threads_per_device() -> int:
    """Threads one device's call spreads its chains over: the cores shared among the CPU devices (one device
    on 2 cores: both; --cpu-devices 2: one each, the devices running side by side)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, jax.local_device_count("cpu")))


def em_loop(params, xt, w, fb, tol, reg_covar, *, max_iter: int, covariance: str, uniforms=None,
            kmeans_iter: int = -1):
    """EM from params on xt [..., d, n] (leading axes: chains) to |change| < tol or max_iter M-steps, each chain
    alone; ((weights, means, covs), n_iter int32, converged bool) as em/loop.EMResult's fields.
    With uniforms [..., K] and kmeans_iter >= 0, params only gives shapes: each chain starts where
    init.init_kmeans starts with k-means++'s draws `uniforms`."""
    dtype = xt.dtype
    batch = w.shape[:-1]
    if uniforms is None:
        uniforms = jnp.zeros(params.weights.shape, dtype)
    name = "jaxcollapse_em_loop_f32" if dtype == jnp.float32 else "jaxcollapse_em_loop_f64"
    shapes = [jax.ShapeDtypeStruct(a.shape, dtype) for a in params] + [jax.ShapeDtypeStruct(batch, jnp.int32)] * 2
    call = jax.ffi.ffi_call(name, shapes, vmap_method="broadcast_all")
    weights, means, covs, n_iter, converged = call(
        *(a.astype(dtype) for a in params), uniforms.astype(dtype), xt, w, fb.covs, fb.offsets,
        jnp.broadcast_to(tol, batch).astype(dtype), jnp.broadcast_to(reg_covar, batch).astype(dtype),
        max_iter=np.int64(max_iter), covariance=np.int64(COVARIANCE_CODES[covariance]),
        kmeans_iter=np.int64(kmeans_iter), threads=np.int64(threads_per_device()))
    return (weights, means, covs), n_iter, converged != 0


def kmeans_em(key, x, w, *, n_components: int, kmeans_iter: int, tol, max_iter: int, covariance: str, reg_covar):
    """init.init_kmeans then em/loop.em on x [n, d] in one native call (one chain; vmap batches the call):
    k-means++ with the uniforms its picks draw from `key`, Lloyd steps, the hard labels' M-step, EM."""
    dtype = x.dtype
    K, d = n_components, x.shape[-1]
    xt = x.T
    reg = jnp.asarray(reg_covar, dtype)
    uniforms = jnp.stack([standard_uniform(k, (), dtype) for k in jax.random.split(key, K)])  # kmeans_plus_plus's
    shapes = MixtureParams(jnp.zeros((K,), dtype), jnp.zeros((K, d), dtype), jnp.zeros((K, d, d), dtype))
    return em_loop(shapes, xt, w, fallback(xt, w, K, covariance, reg), jnp.asarray(tol, dtype), reg,
                   max_iter=max_iter, covariance=covariance, uniforms=uniforms, kmeans_iter=kmeans_iter)
