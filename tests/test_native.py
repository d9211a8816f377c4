"""The native EM loop (jaxcollapse/native): its exp and log, and the same fits as XLA's EM.

Its parity with scikit-learn is tests/test_gmm.py's (the em_path fixture runs those tests on both loops)."""
import ctypes

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tracing import spy

from jaxcollapse import GMM, settings
from jaxcollapse.families.em import loop
from jaxcollapse.families.em.densities import MixtureParams
from jaxcollapse.families.em.loop import em
from jaxcollapse.native import build
from jaxcollapse.native import em as native_em

pytestmark = pytest.mark.skipif(build.compiler() is None, reason="no C++ compiler here: the native EM is not built")


def _library():
    lib, why = build.library()
    assert lib is not None, why  # a compiler is here: the build must work
    return lib


@pytest.mark.parametrize("name,low,high", [("exp", -90.0, 0.0), ("exp", -1.0, 0.0), ("log", 1.0, 4.0)])
def test_vectorised_exp_and_log_are_within_two_float32_ulp(name, low, high):
    """The E-step's exp(-|gap|) and log(1 + small) (em_loop.cc's vexp, vlog) against float64 NumPy."""
    fn = getattr(_library(), f"jaxcollapse_v{name}_f32")
    x = np.random.default_rng(0).uniform(low, high, 1 << 16).astype(np.float32)
    x[:4] = [low, high, (low + high) / 2, np.nextafter(np.float32(high), np.float32(low))]
    out = np.full_like(x, np.nan)
    fn(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(x.size))
    exact = getattr(np, name)(x.astype(np.float64))
    normal = np.abs(exact) >= np.finfo(np.float32).tiny
    ulp = np.spacing(np.abs(exact[normal]).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out[normal] - exact[normal]) / ulp) <= 2.0
    assert np.all(np.abs(out[~normal]) <= np.finfo(np.float32).tiny)  # exp below -87.3: 0 (XLA: a denormal)


def _paths(fit):
    """fit() traced with the native loop, then with XLA's (fit must trace a new function each call: a program
    already traced keeps the loop it was traced with)."""
    out = {}
    for backend in ("native", "xla"):
        with settings.using(em_backend=backend):
            out[backend] = fit()
    return out["native"], out["xla"]


@pytest.mark.parametrize("K,dim,covariance", [(2, 1, "full"), (3, 2, "diag"), (2, 3, "full"), (4, 3, "spherical"),
                                              (1, 2, "full")])
def test_native_loop_equals_xla_loop_in_float64(x64, K, dim, covariance):
    """Each chain of a batch: the same iteration count, stop decision and parameters to float64 rounding."""
    rng = np.random.default_rng(K * 10 + dim)
    B, n = 6, 300
    centres = rng.normal(size=(B, K, dim)) * 3
    x = jnp.asarray(np.take_along_axis(centres, rng.integers(0, K, (B, n, 1)), 1) + rng.normal(size=(B, n, dim)))
    w = jnp.asarray(rng.exponential(size=(B, n)))
    start = MixtureParams(jnp.full((B, K), 1.0 / K), x[:, :K] + 0.1, jnp.broadcast_to(jnp.eye(dim), (B, K, dim, dim)))
    fit = lambda: jax.jit(jax.vmap(lambda p, x_, w_: em(p, x_, w_, tol=1e-7, max_iter=400, covariance=covariance,  # noqa: E731
                                                        reg_covar=1e-6)))(start, x, w)
    native, xla = _paths(fit)
    if K > 1:  # (one component: the fit is exact after the first M-step, every chain stops at 2)
        assert len(set(np.asarray(native.n_iter).tolist())) > 1  # chains stop at different iterations
    np.testing.assert_array_equal(np.asarray(native.n_iter), np.asarray(xla.n_iter))
    np.testing.assert_array_equal(np.asarray(native.converged), np.asarray(xla.converged))
    for a, b in zip(native.params, xla.params):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("K,dim,covariance", [(2, 2, "full"), (3, 1, "full"), (4, 3, "diag")])
def test_native_kmeans_start_and_loop_equal_xla_fit_in_float64(x64, K, dim, covariance):
    """GMM.fit with a fresh k-means++ start: k-means++ (the same uniforms), Lloyd steps, the hard labels'
    M-step and EM in one native call give XLA's fit: the same iteration counts and parameters to rounding.
    Zero weights drop points from the picks and the sums; chain 0's data has collapsed to one point."""
    rng = np.random.default_rng(K + 10 * dim)
    B, n = 8, 250
    centres = rng.normal(size=(B, K, dim)) * 2
    x = np.take_along_axis(centres, rng.integers(0, K, (B, n, 1)), 1) + rng.normal(size=(B, n, dim))
    x[0] = 0.3
    w = jnp.asarray((rng.random((B, n)) > 0.2) * rng.exponential(size=(B, n)))
    keys = jax.random.split(jax.random.key(3), B)

    def fit():
        fam = GMM(K, dim, covariance=covariance, tol=1e-6, max_iter=400)
        return jax.jit(jax.vmap(lambda k, x_, w_: fam.fit(k, x_, w_, None)))(keys, jnp.asarray(x), w)

    (p_native, info_native), (p_xla, info_xla) = _paths(fit)
    np.testing.assert_array_equal(np.asarray(info_native.n_iter), np.asarray(info_xla.n_iter))
    assert np.all(np.asarray(info_native.finite))
    for a, b in [*zip(p_native, p_xla), (info_native.log_lik, info_xla.log_lik)]:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)


def test_chains_spread_over_threads_give_the_same_fits_bit_for_bit(monkeypatch, execution):
    """Each chain runs alone whichever thread claims it: 1 or 3 threads, the same numbers."""
    execution(em_backend="native")
    x = jax.random.normal(jax.random.key(0), (37, 300, 2)) * jnp.linspace(0.5, 2.0, 37)[:, None, None]
    keys = jax.random.split(jax.random.key(1), 37)
    fits = []
    for threads in (1, 3):
        monkeypatch.setattr(native_em, "threads_per_device", lambda t=threads: t)
        fam = GMM(2, 2, tol=1e-5, max_iter=300)
        fits.append(jax.jit(jax.vmap(lambda k, x_: fam.fit(k, x_, jnp.ones(300), None)))(keys, x))
    for a, b in zip(*(jax.tree_util.tree_leaves(f) for f in fits)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_switching_the_em_backend_compiles_an_eager_fit_anew(monkeypatch):
    x = jax.random.normal(jax.random.key(0), (77, 2))  # a shape no other test compiles
    traced = spy(monkeypatch, GMM, "_fitted")  # every fit's trace ends there
    fits = _paths(lambda: GMM(2, 2, tol=1e-3).fit(jax.random.key(1), x, jnp.ones(77), None))
    assert traced.count == 2  # one program per backend: the second is not the first's, reused
    np.testing.assert_allclose(np.asarray(fits[0][0].means), np.asarray(fits[1][0].means), rtol=1e-4, atol=1e-5)


def test_native_loop_is_the_program_and_reseeds_like_xla(x64, monkeypatch):
    """The native call replaces the while loop in the traced program; a component that starts where every
    responsibility underflows to 0 is re-seeded at the same point by both loops."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(200, 2)))
    w = jnp.ones(200).at[:10].set(0.0)
    start = MixtureParams(jnp.array([0.5, 0.5]), jnp.array([[0.0, 0.0], [1e4, 1e4]]),
                          jnp.stack([jnp.eye(2), 1e-2 * jnp.eye(2)]))
    def run(p):
        return em(p, x, w, tol=1e-6, max_iter=300, covariance="full", reg_covar=1e-6)

    # what the trace calls: the native loop, or XLA's while loop stepping EM (loop.advance is its body)
    native_calls, xla_steps = spy(monkeypatch, native_em, "em_loop"), spy(monkeypatch, loop, "advance")
    traced = _paths(lambda: (jax.eval_shape(lambda p: run(p), start), native_calls.count, xla_steps.count))
    assert traced[0][1:] == (1, 0) and traced[1][1:] == (1, 1)
    one_step = _paths(lambda: em(start, x, w, tol=1e-6, max_iter=1, covariance="full", reg_covar=1e-6))
    np.testing.assert_allclose(np.asarray(one_step[0].params.means), np.asarray(one_step[1].params.means), rtol=1e-12)
    native, xla = _paths(lambda: jax.jit(lambda p: run(p))(start))
    assert int(native.n_iter) == int(xla.n_iter) and bool(native.converged)
    for a, b in zip(native.params, xla.params):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)


def test_points_on_a_line_fit_finite_in_float32(execution):
    """Chains collapsed onto lines (the covariance's rounding swamps reg_covar): the native loop's capped
    correlation keeps every fit finite, as XLA's does (tests/test_gmm.py)."""
    execution(em_backend="native")
    rng = np.random.default_rng(0)
    C, n = 64, 200
    t = rng.normal(size=(C, n, 1)) * rng.uniform(1, 10, size=(C, 1, 1))
    x = jnp.asarray(np.concatenate([t, rng.uniform(-5, 5, size=(C, 1, 1)) * t], -1) + 3, jnp.float32)
    fam = GMM(2, 2, tol=1e-5, max_iter=300)
    params, info = jax.jit(jax.vmap(lambda k, x_: fam.fit(k, x_, jnp.ones(n), None)))(jax.random.split(
        jax.random.key(0), C), x)
    assert np.all(np.asarray(info.finite))
    for leaf in params:
        assert np.isfinite(np.asarray(leaf)).all()


def test_shapes_beyond_the_kernel_run_on_xla(execution):
    execution(em_backend="native")
    assert native_em.usable(2, 3, jnp.float32) and native_em.usable(4, 1, jnp.float32)
    assert not native_em.usable(5, 2, jnp.float32) and not native_em.usable(2, 4, jnp.float32)
    assert not native_em.usable(2, 2, jnp.float16)
    x = jax.random.normal(jax.random.key(0), (100, 4))
    params, info = GMM(2, 4, tol=1e-4, max_iter=100).fit(jax.random.key(1), x, jnp.ones(100), None)
    assert bool(info.finite) and bool(info.converged)


def test_an_unknown_em_backend_is_a_value_error():
    with pytest.raises(ValueError, match="em_backend must be one of 'auto', 'native', 'xla'.*'on'.*'off'.*'fast'"):
        settings.configure(em_backend="fast")
    with pytest.raises(ValueError, match="JAXCOLLAPSE_NATIVE must be one of 'auto', 'native', 'xla'.*'fast'"):
        settings.read_environment({"JAXCOLLAPSE_NATIVE": "fast"})
