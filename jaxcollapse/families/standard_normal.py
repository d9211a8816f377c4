"""jax.random.normal and jax.random.uniform, bit for bit, with the Threefry hash written out instead of looped.

jax hashes Threefry-2x32 in a rolled loop on CPU, which XLA:CPU may run on one core (benchmarks/RESULTS.md,
"jax 0.12 and the 1-D Gaussian"). Written out, the 20 rounds and the float conversion fuse into one pass; the
bits are the same integers and the float operations jax's, so the draws are equal bit for bit
(tests/test_gaussian_draws.py).

Any other key implementation, jax_threefry_partitionable=False, or a dtype other than float32
falls back to jax.random. (Fused into the GMM sample's affine map, a tenth of its points come out an ulp
apart from the same map of jax.random.normal's draws.)
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
_MANTISSA_BITS = 23


def standard_normal(key, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """N(0, 1) draws of `shape`, equal bit for bit to jax.random.normal(key, shape, dtype)."""
    unit = _unit(key, shape, dtype)
    if unit is None:
        return jax.random.normal(key, shape, dtype)
    # from here as jax.random.uniform(key, shape, float32, nextafter(-1, 0), 1) and jax.random.normal do it
    low_end = np.nextafter(np.float32(-1.0), np.float32(0.0), dtype=np.float32)
    uniform = lax.max(low_end, unit * (np.float32(1.0) - low_end) + low_end)
    return np.float32(np.sqrt(2)) * lax.erf_inv(uniform)


def standard_uniform(key, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """U[0, 1) draws of `shape`, equal bit for bit to jax.random.uniform(key, shape, dtype)."""
    unit = _unit(key, shape, dtype)
    return jax.random.uniform(key, shape, dtype) if unit is None else unit


def _unit(key, shape, dtype):
    """jax.random.uniform's [0, 1) floats (float32, Threefry keys), or None: then jax.random draws."""
    if not jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)   # a raw key: jax.random reads it with the default implementation
    size = math.prod(shape)
    if (str(jax.random.key_impl(key)) != "threefry2x32" or not jax.config.jax_threefry_partitionable
            or jnp.dtype(dtype) != jnp.float32 or not 0 < size < 2**32):
        return None
    words = jax.random.key_data(key)
    high, low = _threefry2x32(words[0], words[1], jnp.zeros(shape, jnp.uint32),
                              lax.iota(jnp.uint32, size).reshape(shape))   # counts 0 .. size-1 in 64 bits
    mantissa = (high ^ low) >> np.uint32(32 - _MANTISSA_BITS)
    # an identity (mantissa < 2^23) that XLA cannot see through: a remainder is "expensive", so XLA keeps the
    # hash in one fusion that writes these integers once, instead of hashing again in every consumer of the draws
    mantissa = lax.rem(mantissa, np.uint32(2**_MANTISSA_BITS + 1))
    return lax.bitcast_convert_type(mantissa | np.uint32(0x3F800000), jnp.float32) - np.float32(1.0)


def _threefry2x32(key1, key2, count1, count2):
    """The Threefry-2x32 hash (20 rounds, Salmon et al. 2011), as jax computes it."""
    schedule = (key1, key2, key1 ^ key2 ^ _PARITY)
    x1, x2 = count1 + schedule[0], count2 + schedule[1]
    for block in range(5):
        for rotation in _ROTATIONS[block % 2]:
            x1 = x1 + x2
            x2 = x1 ^ ((x2 << np.uint32(rotation)) | lax.shift_right_logical(x2, np.uint32(32 - rotation)))
        x1 = x1 + schedule[(block + 1) % 3]
        x2 = x2 + schedule[(block + 2) % 3] + np.uint32(block + 1)
    return x1, x2
