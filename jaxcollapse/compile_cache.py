"""JAX's persistent compilation cache, on by default for the command line.

A study's first compile costs seconds (the benchmarks' compile columns in benchmarks/RESULTS.md); the cache
keeps compiled programs between runs. Where: $JAXCOLLAPSE_CACHE_DIR, else $XDG_CACHE_HOME/jaxcollapse/jax,
else ~/.cache/jaxcollapse/jax (read once by settings.py). Off: `--no-cache` or JAXCOLLAPSE_NO_CACHE=1. A cache
directory the user set for JAX itself (JAX_COMPILATION_CACHE_DIR) is left as it is.
"""
from __future__ import annotations

from pathlib import Path

import jax

from jaxcollapse import settings

OFF_VARIABLE = "JAXCOLLAPSE_NO_CACHE"


def default_dir() -> Path:
    return settings.environment().cache_dir


def switched_off() -> bool:
    return settings.environment().no_cache


def enable(disabled: bool = False) -> str:
    """Turn the cache on (unless disabled, switched off, or set by the user for JAX); returns where it is."""
    if settings.environment().jax_cache_dir:
        return describe()
    if disabled or switched_off():
        return describe(disabled=disabled)
    jax.config.update("jax_compilation_cache_dir", str(default_dir()))
    return describe()


def describe(disabled: bool = False) -> str:
    """One line for `jaxcollapse info` and the README: where the cache is, and how to turn it off."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return f"{current} (off: --no-cache or {OFF_VARIABLE}=1)"
    if disabled:
        return "off (--no-cache)"
    if switched_off():
        return f"off ({OFF_VARIABLE})"
    return f"{default_dir()} when running a study (off: --no-cache or {OFF_VARIABLE}=1)"
