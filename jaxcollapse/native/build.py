"""Build the native kernels on first use with the machine's C++ compiler, and register them with XLA.

The shared library is compiled for this CPU (-march=native) against the installed jaxlib's FFI
headers and kept in $JAXCOLLAPSE_NATIVE_DIR, else $XDG_CACHE_HOME/jaxcollapse/native, else
~/.cache/jaxcollapse/native, under a name hashed from the source, compiler, flags, jaxlib and CPU;
a later process loads it (~10 ms) instead of compiling (~15 s). Switch: JAXCOLLAPSE_NATIVE = auto
(use it where it builds), on (fail if it does not), off (XLA everywhere).
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

MODES = ("auto", "on", "off")
MODE_VARIABLE = "JAXCOLLAPSE_NATIVE"
DIR_VARIABLE = "JAXCOLLAPSE_NATIVE_DIR"
SOURCE = Path(__file__).with_name("em_loop.cc")
FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno"]
# read when a program is traced (tests and benchmarks set it to compare the two paths)
MODE = os.environ.get(MODE_VARIABLE, "auto")


def check_mode() -> None:
    if MODE not in MODES:
        raise ValueError(f"jaxcollapse.native.build.MODE (or {MODE_VARIABLE}) must be one of {MODES}, got {MODE!r}")


def default_dir() -> Path:
    if os.environ.get(DIR_VARIABLE):
        return Path(os.environ[DIR_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxcollapse" / "native"


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


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
        return None, "no C++ compiler found (set CXX)"
    try:
        include = jax.ffi.include_dir()
        target = default_dir() / _library_name(cxx, include)
        if not target.exists():
            _compile(cxx, include, target)
        lib = ctypes.CDLL(str(target))
        for name, symbol in TARGETS.items():
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
        return None, f"the native EM did not build: {error}"
    return lib, str(target)


TARGETS = {"jaxcollapse_em_loop_f32": "JaxcollapseEmLoopF32", "jaxcollapse_em_loop_f64": "JaxcollapseEmLoopF64"}


def wanted() -> bool:
    """Whether the native kernels are to be used (mode auto or on); 'on' fails when they do not build."""
    check_mode()
    if MODE == "off":
        return False
    lib, why = library()
    if lib is None and MODE == "on":
        raise RuntimeError(f"{MODE_VARIABLE}=on but {why}")
    return lib is not None


def describe() -> str:
    check_mode()
    if MODE == "off":
        return f"off ({MODE_VARIABLE}): the GMM's fit runs as XLA operations"
    lib, why = library()
    if lib is None:
        return f"{MODE} ({MODE_VARIABLE}), not in use: {why}"
    return f"{MODE} ({MODE_VARIABLE}): the GMM's fit on CPUs (k-means++ start and EM) as C++ per chain, {why}"
