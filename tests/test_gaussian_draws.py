"""The Gaussian's standard draws (families/standard_normal.py) equal jax.random.normal bit for bit.

The reference is jax's own sampler: same key, same shape, same float32 bits, vmapped over keys
and compiled as the engine compiles them; other key implementations go to jax.random.normal.
"""
import jax
import numpy as np
import pytest

from jaxcollapse.families.standard_normal import standard_normal, standard_uniform


def _bits(a):
    return np.asarray(a).view(np.uint32)


@pytest.mark.parametrize("shape", [(100, 1), (7, 3)])
def test_draws_equal_jax_random_normal_bit_for_bit(shape):
    keys = jax.random.split(jax.random.key(17), 64)
    ours = jax.jit(jax.vmap(lambda k: standard_normal(k, shape)))(keys)
    jaxs = jax.jit(jax.vmap(lambda k: jax.random.normal(k, shape)))(keys)
    np.testing.assert_array_equal(_bits(ours), _bits(jaxs))
    raw = jax.random.PRNGKey(5)   # a raw uint32 key is read as jax.random.normal reads it
    np.testing.assert_array_equal(_bits(standard_normal(raw, shape)), _bits(jax.random.normal(raw, shape)))


def test_other_key_implementations_use_jax_random_normal():
    key = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(_bits(standard_normal(key, (5, 2))), _bits(jax.random.normal(key, (5, 2))))


@pytest.mark.parametrize("shape", [(1000,), (7, 3), ()])
def test_uniform_draws_equal_jax_random_uniform_bit_for_bit(shape):
    keys = jax.random.split(jax.random.key(23), 64)
    ours = jax.jit(jax.vmap(lambda k: standard_uniform(k, shape)))(keys)
    jaxs = jax.jit(jax.vmap(lambda k: jax.random.uniform(k, shape)))(keys)
    np.testing.assert_array_equal(_bits(ours), _bits(jaxs))
    key = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(_bits(standard_uniform(key, shape)), _bits(jax.random.uniform(key, shape)))
