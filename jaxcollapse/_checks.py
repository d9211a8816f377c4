"""Host-side input checks: clear ValueErrors naming the argument, before anything compiles."""
from __future__ import annotations

import numbers

import jax
import numpy as np


def is_concrete(value) -> bool:
    """True for numbers, lists and arrays holding values; False for tracers and abstract stand-ins."""
    if isinstance(value, jax.core.Tracer):
        return False
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        return False  # spread over several processes (sharding.py places values already checked)
    return isinstance(value, (numbers.Number, np.ndarray, np.generic, jax.Array, list, tuple))


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral,)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def number_in(name: str, value, low: float, high: float, *, low_open=False, high_open=False):
    """Check a scalar (or array of scalars) is finite and lies in [low, high] (open ends as asked); skip tracers.

    An infinite bound means "no bound": the value itself must still be finite (inf is never a setting).
    """
    if not is_concrete(value):
        return value
    arr = np.asarray(value, dtype=float)
    allowed = _interval(low, high, low_open, high_open)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite number {allowed}, got {value!r}")
    bad_low = arr <= low if low_open else arr < low
    bad_high = arr >= high if high_open else arr > high
    if np.any(bad_low) or np.any(bad_high):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if np.isinf(high):
        return f"{'>' if low_open else '>='} {low}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def finite_array(name: str, value, shape=None, ndim=None) -> np.ndarray:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; all values must be finite")
    return arr


def spd_matrix(name: str, value, dim: int) -> np.ndarray:
    arr = finite_array(name, value, shape=(dim, dim)).astype(float)
    if not np.allclose(arr, arr.T, rtol=1e-6, atol=1e-10):
        raise ValueError(f"{name} must be symmetric positive definite; it is not symmetric")
    if np.linalg.eigvalsh(arr).min() <= 0:
        raise ValueError(f"{name} must be symmetric positive definite; it has a non-positive eigenvalue")
    return arr


def probability_vector(name: str, value, n_states: int) -> np.ndarray:
    arr = finite_array(name, value, shape=(n_states,)).astype(float)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative, got {arr}")
    if not np.isclose(arr.sum(), 1.0, atol=1e-6):
        raise ValueError(f"{name} must sum to 1, got sum {arr.sum()!r}")
    return arr
