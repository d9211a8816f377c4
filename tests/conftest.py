"""Tests run on CPU with JAX's defaults (float32); a test that needs float64 says so."""
import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# the command line turns JAX's persistent compilation cache on in ~/.cache; tests never write there
# (a test that checks the cache gives its subprocess a temporary XDG_CACHE_HOME)
os.environ["JAXCOLLAPSE_NO_CACHE"] = "1"
# likewise the native EM's build (jaxcollapse/native/build.py): one shared temporary folder, built once
os.environ.setdefault("JAXCOLLAPSE_NATIVE_DIR", os.path.join(tempfile.gettempdir(), "jaxcollapse-native-tests"))
# The suite is compile-bound: XLA's LLVM back end at its lowest level (XLA's graph passes, fusion
# included, still run) compiles about a third faster. Subprocesses inherit it, so both sides of every
# bit-for-bit comparison compile alike. JAX_DISABLE_MOST_OPTIMIZATIONS=0 tests the fully optimised
# build (.ci/run does so on its second Python).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402  (after the environment above)
import numpy as np
import pytest

jax.config.update("jax_disable_most_optimizations",
                  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"].lower() not in ("0", "false", "no", "off"))


def z_score(samples, expected, axis=0):
    """|Monte-Carlo mean - expected| in units of its standard error, computed from the chains."""
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[axis]
    se = samples.std(axis=axis, ddof=1) / np.sqrt(n)
    return np.abs(samples.mean(axis=axis) - expected) / se


Z_MAX = 4.0  # a few standard errors: a correct engine fails this about once in 16,000 comparisons


@pytest.fixture
def x64():
    """float64 for the duration of one test (parity with float64 references, rounding-free stop decisions)."""
    import jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)



@pytest.fixture
def execution():
    """jaxcollapse.settings.configure for one test (e.g. execution(em_backend="xla")), undone after it."""
    from jaxcollapse import settings

    yield settings.configure
    settings.configure(None)


@pytest.fixture
def environ(monkeypatch):
    """environ(NAME="value", OTHER=None): set (None: delete) environment variables for one test and have
    jaxcollapse read them again (settings.py reads them once); both undone after the test."""
    from jaxcollapse import settings

    def change(**values):
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return settings.reload_environment()

    yield change
    monkeypatch.undo()
    settings.reload_environment()


@pytest.fixture(params=["native", "xla"])
def em_path(request, execution):
    """Run a test on each EM loop: the native one (jaxcollapse/native) and XLA's batched one."""
    from jaxcollapse.native import build

    if request.param == "native" and build.compiler() is None:
        pytest.skip("no C++ compiler here: the native EM is not built")
    execution(em_backend=request.param)
    return request.param


@pytest.fixture
def xla_em(execution):
    """XLA's batched EM only (tests of its slots, blocks and schedules)."""
    execution(em_backend="xla")


@pytest.fixture
def z():
    """z_score as a fixture, for tests that prefer it to an import."""
    return z_score
