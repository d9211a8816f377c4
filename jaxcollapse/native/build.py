"""Build the native kernels on first use with the machine's C++ compiler, and register them with XLA.

The shared library is compiled for this CPU (-march=native) against the installed jaxlib's FFI
headers and kept in $JAXCOLLAPSE_NATIVE_DIR, else $XDG_CACHE_HOME/jaxcollapse/native, else
~/.cache/jaxcollapse/native (settings.environment().native_dir), under a name hashed from the source,
compiler, flags, jaxlib and CPU; a later process loads it (~10 ms) instead of compiling (~15 s). Whether
it is used is the em_backend setting (settings.py), resolved in native/em.py.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jaxlib

from jaxcollapse import settings

SOURCE = Path(__file__).with_name("em_loop.cc")
FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno"]


def default_dir() -> Path:
    return settings.environment().native_dir


def compiler() -> str | None:
    return settings.environment().cxx or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _library_name(cxx: str, include: str) -> str:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    digest = hashlib.sha256("\0".join([SOURCE.read_text(), version, " ".join(FLAGS), include, jaxlib.__version__,
                                        platform.machine(), _cpu_flags()]).encode()).hexdigest()[:16]
    return f"em_loop-{digest}.so"


def _compile(cxx: str, include: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # compiled under a temporary name and renamed: processes building at once never load a partial file
    fd, partial = tempfile.mkstemp(prefix=target.stem + ".", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([cxx, *FLAGS, "-I", include, str(SOURCE), "-o", partial], capture_output=True,
                              text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{cxx} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


@functools.lru_cache(maxsize=None)
def library() -> tuple[ctypes.CDLL | None, str]:
    """(the loaded library with its targets registered, or None; where it is, or why not)."""
    cxx = compiler()
    if cxx is None:
        return _failed("no C++ compiler found (set CXX)")
    try:
        include = jax.ffi.include_dir()
        target = default_dir() / _library_name(cxx, include)
        if not target.exists():
            _compile(cxx, include, target)
        lib = ctypes.CDLL(str(target))
        for name, symbol in TARGETS.items():
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
        return _failed(str(error))
    return lib, str(target)


def _failed(why: str) -> tuple[None, str]:
    # logged once (library() is cached): where em_backend is "auto" the GMM's fit then runs as XLA code
    settings.LOGGER.warning(f"the native EM did not build: {why}; em_backend=auto runs XLA's EM")
    return None, why


TARGETS = {"jaxcollapse_em_loop_f32": "JaxcollapseEmLoopF32", "jaxcollapse_em_loop_f64": "JaxcollapseEmLoopF64"}

