"""GMM family: scikit-learn parity, EM invariants, re-seeding, per-chain masking, metrics, bad input."""
import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from _tracing import spy

from jaxcollapse import mixture_metrics
from jaxcollapse._prefix import BLOCK, first_exceeding, prefix_sums
from jaxcollapse.families.em import densities, mstep
from jaxcollapse.families.em.densities import MixtureParams
from jaxcollapse.families.em.kmeans import lloyd
from jaxcollapse.families.em.loop import em_trace
from jaxcollapse.families.em.sampling import inverse_cdf, pick, pick_by_weight
from jaxcollapse.families.gmm import GMM, GMMParams
from jaxcollapse.types import Source


def _two_clusters(rng, dim, n=(300, 200)):
    return np.concatenate([rng.normal(0.0, 1.0, (n[0], dim)),
                           rng.normal(3.0, 0.5, (n[1], dim)) @ np.diag(np.linspace(1.0, 0.6, dim))])


def _initial(rng, x, covariance):
    """Same starting mixture for both: two data points as means, the data covariance shaped by type."""
    dim = x.shape[1]
    means = x[rng.choice(len(x), 2, replace=False)]
    cov = np.atleast_2d(np.cov(x.T, bias=True))
    if covariance == "diag":
        cov = np.diag(np.diag(cov))
    elif covariance == "spherical":
        cov = np.trace(cov) / dim * np.eye(dim)
    covs = np.stack([cov, 0.5 * cov])
    precisions = np.linalg.inv(covs)
    if covariance == "diag":
        precisions = np.stack([np.diag(p) for p in precisions])
    elif covariance == "spherical":
        precisions = precisions[:, 0, 0]
    return np.array([0.5, 0.5]), means, covs, precisions


def _match(a, b):
    """Permutation of b's components closest to a's (by means)."""
    K = a.shape[0]
    return min(itertools.permutations(range(K)), key=lambda p: np.sum((a - b[list(p)]) ** 2))


# ------------------------------------------------------------------ scikit-learn parity
@pytest.mark.parametrize("dim", [1, 2, 5])  # 5: the general (not per-coordinate) EM step
@pytest.mark.parametrize("covariance", ["full", "diag", "spherical"])
def test_parity_with_sklearn(x64, dim, covariance, em_path):
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(10 * dim + len(covariance))
    x = _two_clusters(rng, dim)
    weights, means, covs, precisions = _initial(rng, x, covariance)
    tol, max_iter, reg = 1e-6, 500, 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn must converge here too
        ref = GaussianMixture(2, covariance_type=covariance, tol=tol, max_iter=max_iter, reg_covar=reg,
                              weights_init=weights, means_init=means, precisions_init=precisions).fit(x)
    fam = GMM(2, dim, covariance=covariance, tol=tol, max_iter=max_iter, reg_covar=reg, init="previous")
    params, info = jax.jit(fam.fit)(jax.random.key(0), x, jnp.ones(len(x)), GMMParams(weights, means, covs))

    # the same float64 recurrence with the same stopping rule: same iteration count, and
    # differences only from summation order (~n eps per step, contracted by EM): 1e-8 is loose
    assert int(info.n_iter) == ref.n_iter_
    assert bool(info.converged) and ref.converged_
    score = ref.score(x)  # mean log-likelihood at the final params
    assert abs(float(info.log_lik) - score) <= 1e-4 * abs(score)
    np.testing.assert_allclose(float(info.log_lik), score, rtol=1e-8)
    order = list(_match(np.asarray(params.means), ref.means_))
    ref_covs = {"full": ref.covariances_,
                "diag": np.stack([np.diag(v) for v in np.atleast_2d(ref.covariances_)]),
                "spherical": np.stack([v * np.eye(dim) for v in np.ravel(ref.covariances_)])}[covariance]
    np.testing.assert_allclose(np.asarray(params.weights), ref.weights_[order], rtol=1e-8)
    np.testing.assert_allclose(np.asarray(params.means), ref.means_[order], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(params.covs), ref_covs[order], rtol=1e-8, atol=1e-12)


def test_parity_not_converged_within_max_iter(x64, em_path):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(3)
    x = _two_clusters(rng, 2)
    weights, means, covs, precisions = _initial(rng, x, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(2, tol=1e-12, max_iter=3, weights_init=weights, means_init=means,
                              precisions_init=precisions).fit(x)
    fam = GMM(2, 2, tol=1e-12, max_iter=3, init="previous")
    params, info = fam.fit(jax.random.key(0), x, jnp.ones(len(x)), GMMParams(weights, means, covs))
    assert int(info.n_iter) == 3 and not bool(info.converged) and not ref.converged_
    np.testing.assert_allclose(np.asarray(params.means), ref.means_, rtol=1e-8)


# ------------------------------------------------------------------ EM invariants
def test_weighted_log_likelihood_never_decreases(x64):
    # EM's guarantee holds for the exact M-step, i.e. reg_covar = 0 (well-separated data keeps covs SPD)
    rng = np.random.default_rng(1)
    x = jnp.asarray(_two_clusters(rng, 2))
    w = jnp.asarray(rng.exponential(size=len(x)) * (rng.random(len(x)) > 0.2))
    start = MixtureParams(jnp.array([0.5, 0.5]), x[jnp.array([0, 1])], jnp.stack([jnp.eye(2)] * 2))
    for covariance in ("full", "diag", "spherical"):
        _, trace = em_trace(start, x, w, n_steps=60, covariance=covariance, reg_covar=0.0)
        trace = np.asarray(trace)
        # rounding of a mean of n float64 terms: ~ n eps |ll|
        slack = len(x) * np.finfo(np.float64).eps * np.abs(trace[1:])
        assert np.all(np.diff(trace) >= -slack), covariance
        assert trace[-1] > trace[0] + 0.1


def test_zero_weights_equal_the_subset(x64, em_path):
    rng = np.random.default_rng(2)
    x = _two_clusters(rng, 2)
    keep = rng.random(len(x)) > 0.3
    init = GMMParams(*_initial(rng, x, "full")[:3])
    fam = GMM(2, 2, tol=1e-8, max_iter=500, init="previous")
    masked, info_m = fam.fit(jax.random.key(0), x, jnp.asarray(keep, float), init)
    subset, info_s = fam.fit(jax.random.key(0), x[keep], jnp.ones(int(keep.sum())), init)
    assert int(info_m.n_iter) == int(info_s.n_iter)
    for a, b in zip(masked, subset):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(info_m.log_lik), float(info_s.log_lik), rtol=1e-12)


def test_integer_weights_equal_duplicated_points(x64, em_path):
    rng = np.random.default_rng(4)
    x = _two_clusters(rng, 1, n=(60, 40))
    counts = rng.integers(0, 4, len(x))
    init = GMMParams(*_initial(rng, x, "full")[:3])
    fam = GMM(2, 1, tol=1e-9, max_iter=500, init="previous")
    weighted, _ = fam.fit(jax.random.key(0), x, jnp.asarray(counts, float), init)
    repeated, _ = fam.fit(jax.random.key(0), np.repeat(x, counts, 0), jnp.ones(int(counts.sum())), init)
    for a, b in zip(weighted, repeated):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)


def test_empty_component_is_reseeded_deterministically(em_path):
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(200, 2)), jnp.float32)
    w = jnp.ones(200).at[:10].set(0.0)
    # component 1 sits so far away that every responsibility underflows to exactly 0
    start = MixtureParams(jnp.array([0.5, 0.5]), jnp.array([[0.0, 0.0], [1e4, 1e4]]),
                              jnp.stack([jnp.eye(2), 1e-2 * jnp.eye(2)]))
    (params, _), (again, _) = (em_trace(start, x, w, n_steps=1, covariance="full", reg_covar=1e-6)
                               for _ in range(2))
    for leaf in params:
        assert np.all(np.isfinite(np.asarray(leaf)))
    # re-seeded at the worst-explained training point (w > 0) + (1/K) x the data's per-axis std
    kept = np.asarray(x, np.float64)[10:]
    under_component0 = scipy.stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(kept)
    expected = kept[np.argmin(under_component0)] + 0.5 * kept.std(0)
    np.testing.assert_allclose(np.asarray(params.means[1]), expected, rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(params.means), np.asarray(again.means))
    # and a whole fit from there is finite and converges
    fam = GMM(2, 2, tol=1e-5, max_iter=500, init="previous")
    fitted, info = fam.fit(jax.random.key(0), x, w, GMMParams(*start))
    assert bool(info.finite) and bool(info.converged)


def test_batched_reseed_leaves_each_lane_as_its_fit_alone(x64, em_path):
    """In a batch the re-seed branch is taken once for all lanes; each lane still equals its fit alone.

    In float64: in float32 the batched and single programs may sum in another order (XLA:CPU of jax
    0.12 uses FMA in a batch's vectorised part only), which can flip a stop decision at tol."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(200, 2)))
    w = jnp.ones(200).at[:10].set(0.0)
    start = MixtureParams(jnp.array([0.5, 0.5]), jnp.array([[0.0, 0.0], [1e4, 1e4]]),
                          jnp.stack([jnp.eye(2), 1e-2 * jnp.eye(2)]))
    fam = GMM(2, 2, tol=1e-5, max_iter=500, init="previous")
    plain = MixtureParams(jnp.array([0.5, 0.5]), jnp.array([[-1.0, 0.0], [1.0, 0.0]]), start.covs)
    starts = GMMParams(*(jnp.stack([a, b, a]) for a, b in zip(start, plain)))
    batch, batch_info = jax.jit(jax.vmap(lambda s: fam.fit(jax.random.key(0), x, w, s)))(starts)
    for lane in range(3):  # called on its own, the fit compiles once for the three lanes (compiled_when_eager)
        alone, alone_info = fam.fit(jax.random.key(0), x, w, GMMParams(*(a[lane] for a in starts)))
        assert int(alone_info.n_iter) == int(batch_info.n_iter[lane])
        for a, b in zip(alone, batch):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b[lane]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_collapsed_data_stays_finite(init, em_path):
    # every point identical: a chain that collapsed to a point is the phenomenon, not an error
    x = jnp.full((100, 2), 0.3, jnp.float32)
    fam = GMM(2, 2, tol=1e-5, max_iter=50, init=init)
    params, info = fam.fit(jax.random.key(0), x, jnp.ones(100), None)
    assert bool(info.finite)
    np.testing.assert_allclose(np.asarray(params.means), 0.3, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(params.covs), np.broadcast_to(1e-6 * np.eye(2), (2, 2, 2)), rtol=1e-3,
                               atol=1e-9)


def test_component_collapsed_onto_a_line_stays_positive_definite():
    """Points on a line (scale ~10, float32): the M-step's covariance is rank 1 up to reg_covar, which the
    entries' rounding swamps; uncapped, 120 of these 400 lines gave a NaN Cholesky pivot (and the paper's
    run a NaN chain). Capped: every factor finite with a positive pivot; an ordinary covariance unchanged."""
    rng = np.random.default_rng(0)
    C, n = 400, 200
    t = rng.normal(size=(C, n)) * rng.uniform(1, 10, size=(C, 1))
    xt = np.stack([t, rng.uniform(-5, 5, size=(C, 1)) * t + rng.normal(size=(C, 1))], 1)
    xt = (xt + 3 * rng.normal(size=(C, 2, 1))).astype(np.float32)
    w = np.ones((C, n), np.float32)

    def line_component(xt, w):
        resp = jnp.stack([w, jnp.zeros_like(w)])
        covs = mstep.moments(jnp.zeros((2, 2)), xt, w, resp, "full", 1e-6).covs[:1]
        return densities.cholesky(covs)[0]

    chol = np.asarray(jax.jit(jax.vmap(line_component))(xt, w))
    assert np.isfinite(chol).all() and (chol[:, 1, 1] > 0).all()
    ordinary = jnp.asarray([[[2.0, 0.5], [0.5, 1.0]], [[1.0, -0.999], [-0.999, 1.0]]], jnp.float32)
    np.testing.assert_array_equal(np.asarray(mstep.capped_correlation(ordinary)), np.asarray(ordinary))


@pytest.mark.parametrize("rank", [1, 2])
def test_component_collapsed_onto_a_line_or_plane_in_3d_stays_positive_definite(rank):
    """As above in 3-D (LAPACK's Cholesky): without the floor, 293 of these 400 lines and 222 of 400 planes
    gave NaN factors."""
    rng = np.random.default_rng(rank)
    C, n = 400, 200
    t = rng.normal(size=(C, rank, n)) * rng.uniform(1, 10, size=(C, rank, 1))
    xt = np.einsum("cdr,crn->cdn", rng.uniform(-5, 5, size=(C, 3, rank)), t) + 3 * rng.normal(size=(C, 3, 1))
    w = np.ones((C, n), np.float32)

    def collapsed_component(xt, w):
        resp = jnp.stack([w, jnp.zeros_like(w)])
        return jnp.linalg.cholesky(mstep.moments(jnp.zeros((2, 3)), xt, w, resp, "full", 1e-6).covs[0])

    chol = np.asarray(jax.jit(jax.vmap(collapsed_component))(xt.astype(np.float32), w))
    assert np.isfinite(chol).all() and (np.diagonal(chol, axis1=1, axis2=2) > 0).all()


# ------------------------------------------------------------------ per-chain masking under vmap
def test_vmapped_chains_equal_each_chain_alone(x64, em_path):
    """A batch of chains (different iteration counts) equals each chain fitted alone.

    In float64, to rounding, with identical iteration counts: the batched and single programs may
    order sums differently, and in float32 that can flip a stop decision sitting right at tol.
    """
    fam = GMM(2, 2, tol=1e-5, max_iter=300)
    src = fam.make_params([0.5, 0.5], [[0.0, 0.0], [1.5, 0.0]], [np.eye(2), 0.5 * np.eye(2)])
    keys = jax.random.split(jax.random.key(7), 6)

    def one(key):
        k_data, k_fit = jax.random.split(key)
        return fam.fit(k_fit, fam.sample(k_data, src, 300), jnp.ones(300), None)

    batch_params, batch_info = jax.jit(jax.vmap(one))(keys)
    iterations = np.asarray(batch_info.n_iter)
    assert len(set(iterations.tolist())) > 1  # chains stop at different iterations
    single = jax.jit(one)
    for c in range(len(keys)):
        params, info = single(keys[c])
        assert int(info.n_iter) == iterations[c]
        assert bool(info.converged) == bool(batch_info.converged[c])
        for a, b in zip(params, batch_params):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b[c]), rtol=1e-9, atol=1e-12)


def test_chunked_while_steps_each_lane_to_its_count_and_counts_its_work():
    from jaxcollapse.families.em.compaction import chunked_while, lane_iterations

    need = jnp.asarray(np.random.default_rng(0).geometric(1 / 15, 37), jnp.int32)  # 37: no block size divides it
    running = lambda st: st[0] < st[1]  # noqa: E731
    # a running lane steps +1 (args); stepped twice in one trip it would overshoot an odd count
    step = lambda st, args: (st[0] + jnp.where(st[0] < st[1], args, 0), st[1])  # noqa: E731
    # (37, 37): one block of every lane (GPU); last 0: no tail block (a program that runs once)
    for blocks in ((8, 2), (16, 4), (16, 8, 3), (8, 8, 3), (37, 1), (37, 37), (16, 16, 0), (16, 4, 0)):
        (count, _), ran = jax.jit(lambda s, b=blocks: chunked_while(step, running, s, jnp.ones(37, jnp.int32), b))(
            (jnp.zeros(37, jnp.int32), need))
        np.testing.assert_array_equal(np.asarray(count), np.asarray(need))
        assert int(ran) == lane_iterations(need, blocks) >= int(need.sum())
    assert lane_iterations(need, (8, 1)) == int(need.sum())  # blocks of one lane idle never


def test_slotted_while_steps_each_lane_to_its_count_and_counts_its_work():
    from jaxcollapse.families.em.compaction import lane_iterations
    from jaxcollapse.families.em.slots import lane_efficiency, schedule, slotted_lane_iterations, slotted_while

    need = np.random.default_rng(1).geometric(1 / 15, 101)
    need[[3, 40, 100]] = 0  # lanes that never run: a slot takes the next lane at once
    need = jnp.asarray(need, jnp.int32)
    running = lambda st: st[0] < st[1]  # noqa: E731
    step = lambda st, args: (st[0] + jnp.where(st[0] < st[1], args, 0), st[1])  # noqa: E731
    for slots, blocks in ((8, (8, 2)), (25, (16, 8, 4)), (25, (16, 4, 1)), (0, (16, 4))):  # 0: chunked_while alone
        (count, _), ran = jax.jit(lambda s, n=slots, b=blocks: slotted_while(
            step, running, s, jnp.ones(101, jnp.int32), n, b))((jnp.zeros(101, jnp.int32), need))
        np.testing.assert_array_equal(np.asarray(count), np.asarray(need))
        assert int(ran) == slotted_lane_iterations(need, slots, blocks) >= int(need.sum())
    assert slotted_lane_iterations(need, 0, (16, 4)) == lane_iterations(need, (16, 4))
    # two devices: each runs its own loop over its contiguous half of the lanes (51 + 50); generation 0 runs once
    fits = np.stack([np.asarray(need), np.asarray(need)[::-1]])
    assert schedule(51, one_off=True) == (0, (16, 16, 0)) and schedule(51)[0] > 0
    ran = sum(slotted_lane_iterations(row[part], *schedule(51, one_off=g == 0))
              for g, row in enumerate(fits) for part in (slice(0, 51), slice(51, None)))
    assert lane_efficiency(fits, devices=2) == fits.sum() / ran


def test_first_max_is_argmax_and_fallback_is_the_weighted_covariance(x64):
    from jaxcollapse.families.em.mstep import fallback, first_max

    rng = np.random.default_rng(2)
    cases = [rng.normal(size=50), np.array([1.0, 3.0, 3.0, -np.inf, 3.0]), np.full(4, -np.inf),
             np.array([0.0, np.nan, 5.0, np.nan]), np.array([7.0, 7.0])]
    for v in cases:
        assert int(jax.jit(first_max)(jnp.asarray(v))) == int(jnp.argmax(jnp.asarray(v))), v
    x, w = rng.normal(size=(200, 3)), rng.integers(0, 3, 200).astype(float)
    fb = fallback(jnp.asarray(x.T), jnp.asarray(w), 2, "full", 0.5)
    expect = np.cov(x.T, aweights=w, bias=True) + 0.5 * np.eye(3)
    np.testing.assert_allclose(np.asarray(fb.covs), np.broadcast_to(expect, (2, 3, 3)), rtol=1e-12)


def test_previous_without_params_falls_back_to_kmeans():
    x = jax.random.normal(jax.random.key(0), (300, 2))
    a = GMM(2, 2, init="previous").fit(jax.random.key(1), x, jnp.ones(300), None)
    b = GMM(2, 2, init="kmeans++").fit(jax.random.key(1), x, jnp.ones(300), None)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_traced_tol_and_reg_covar_do_not_recompile():
    fam = GMM(2, 1, tol=1e-3, reg_covar=1e-6)
    x = jax.random.normal(jax.random.key(0), (100, 1))

    traces = []

    @jax.jit
    def run(f):
        traces.append(f)  # a Python side effect: runs only while run is traced
        return f.fit(jax.random.key(1), x, jnp.ones(100), None)[1].n_iter

    run(fam)
    run(GMM(2, 1, tol=1e-4, reg_covar=1e-3))
    assert len(traces) == 1


def test_an_eager_fit_runs_one_cached_program(monkeypatch):
    """A user's own fit call (outside any trace) runs one compiled program per shape: new data and a new tol
    reuse it (eagerly, every call would compile its loops anew), and it gives the numbers of the fit traced
    inside a program."""
    x = jax.random.normal(jax.random.key(0), (123, 2))  # a shape no other test compiles
    w = jnp.ones(123)
    fits = spy(monkeypatch, GMM, "_fitted")  # every fit's trace ends there
    eager = GMM(2, 2, tol=1e-3).fit(jax.random.key(1), x, w, None)
    GMM(2, 2, tol=1e-4).fit(jax.random.key(2), x + 1.0, w, None)
    assert fits.count == 1
    traced = jax.jit(lambda fam, key, x, w: fam.fit(key, x, w, None))(GMM(2, 2, tol=1e-3), jax.random.key(1), x, w)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(traced)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _fits_traced_anew():
    fam = GMM(2, 2, tol=1e-4, max_iter=300)
    return jax.vmap(lambda k, x: fam.fit(k, x, jnp.ones(200), None))  # a new function: traced anew


def _once_data():
    x = jax.random.normal(jax.random.key(0), (32, 200, 2)) * jnp.linspace(0.5, 2.0, 32)[:, None, None]
    return jax.random.split(jax.random.key(1), 32), x


def test_a_program_that_runs_once_steps_em_in_fewer_loops(xla_em, monkeypatch):
    """Traced under tracing_one_off (a study's generation 0), the batched EM has no slots and no tail block."""
    from jaxcollapse.families.base import tracing_one_off
    from jaxcollapse.families.em import loop

    schedules = spy(monkeypatch, loop, "schedule")  # (slots, (big, small, tail)), read while the EM is traced
    jax.eval_shape(_fits_traced_anew(), *_once_data())
    with tracing_one_off():
        jax.eval_shape(_fits_traced_anew(), *_once_data())
    (usual_slots, usual_blocks), (once_slots, once_blocks) = schedules.results
    assert usual_slots > 0 and usual_blocks[2] > 0
    assert once_slots == 0 and once_blocks[2] == 0


@pytest.mark.slow
def test_a_program_that_runs_once_gives_the_same_fits(xla_em):
    """Each lane runs its own EM recurrence in either schedule: the same fits bit for bit."""
    from jaxcollapse.families.base import tracing_one_off

    usual = jax.jit(_fits_traced_anew())(*_once_data())
    with tracing_one_off():
        once = jax.jit(_fits_traced_anew())(*_once_data())
    for a, b in zip(jax.tree_util.tree_leaves(usual), jax.tree_util.tree_leaves(once)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------ sampling and densities
def test_sample_from_a_source_with_other_k_has_the_right_moments(z):
    fam = GMM(2, 2)
    src = fam.make_params([0.3, 0.7], [[-1.0, 0.0], [2.0, 1.0]], [np.eye(2), [[1.0, 0.5], [0.5, 2.0]]])
    one = fam.make_params([1.0], [[0.0, 0.0]], [np.eye(2)])
    x = np.asarray(fam.sample(jax.random.key(0), src, 40_000), np.float64)
    mean = 0.3 * np.array([-1.0, 0.0]) + 0.7 * np.array([2.0, 1.0])
    assert np.all(z(x, mean) < 4.0)
    second = 0.3 * (np.eye(2) + np.outer([-1, 0], [-1, 0])) + 0.7 * (np.array([[1, .5], [.5, 2]]) + np.outer([2, 1], [2, 1]))
    assert np.all(z(x[:, :, None] * x[:, None, :], second) < 4.0)
    y = np.asarray(fam.sample(jax.random.key(1), one, 20_000), np.float64)
    assert np.all(z(y, 0.0) < 4.0) and np.all(z(y * y, 1.0) < 4.0)


def test_sample_marginals_pass_ks_against_the_mixture_cdf():
    # the whole distribution, not only two moments: each axis and a diagonal projection
    fam = GMM(3, 2)
    weights, means = [0.2, 0.5, 0.3], [[-2.0, 0.0], [1.0, 1.0], [3.0, -1.0]]
    covs = [np.eye(2) * 0.3, [[1.0, 0.6], [0.6, 0.8]], [[0.2, -0.1], [-0.1, 0.5]]]
    x = np.asarray(fam.sample(jax.random.key(3), fam.make_params(weights, means, covs), 20_000), np.float64)
    for direction in ([1.0, 0.0], [0.0, 1.0], [1.0, 1.0]):
        u = np.asarray(direction)
        loc = [u @ np.asarray(m) for m in means]
        scale = [np.sqrt(u @ np.asarray(c) @ u) for c in covs]
        cdf = lambda t: sum(wk * scipy.stats.norm.cdf(t, m, s) for wk, m, s in zip(weights, loc, scale))  # noqa: E731
        assert scipy.stats.kstest(x @ u, cdf).pvalue > 1e-4


def test_pick_never_takes_a_zero_increment_and_matches_probabilities():
    p = np.array([0.0, 0.1, 0.0, 0.6, 0.3, 0.0])
    picks = np.asarray(pick(jax.random.key(0), jnp.cumsum(jnp.asarray(p, jnp.float32)), (50_000,)))
    counts = np.bincount(picks, minlength=p.size)
    assert np.all(counts[p == 0] == 0)
    assert scipy.stats.chisquare(counts[p > 0], 50_000 * p[p > 0]).pvalue > 1e-4
    # a uniform that rounds up to the total must not run past the last positive increment
    cumulative = jnp.asarray([0.0, 1.0, 1.0])
    assert int(inverse_cdf(jnp.asarray(1.0), cumulative)) == 1
    assert int(inverse_cdf(jnp.asarray(0.0), cumulative)) == 1


def test_prefix_sums_are_running_sums_to_float32_rounding():
    rng = np.random.default_rng(0)
    for n in (1, 7, BLOCK, BLOCK + 1, 1000, 5000):
        x = rng.uniform(size=(3, n)).astype(np.float32)
        exact = np.cumsum(x.astype(np.float64), -1)
        # blocked summation: each sum adds at most BLOCK terms in a block and one per block level
        levels = int(np.ceil(np.log(n) / np.log(BLOCK))) if n > 1 else 1
        bound = (BLOCK + levels * BLOCK) * np.finfo(np.float32).eps * exact[:, -1:]
        assert np.all(np.abs(np.asarray(prefix_sums(jnp.asarray(x))) - exact) <= bound)
    counts = (jnp.arange(100) % 3 == 0).astype(jnp.int32)
    np.testing.assert_array_equal(prefix_sums(counts), np.cumsum(np.asarray(counts)))


def test_first_exceeding_never_takes_a_zero_increment_of_unmonotone_sums():
    # running sums whose rounding rose at a zero increment (prefix_sums does not promise monotone sums)
    increments = jnp.asarray([1.0, 0.0, 1.0, 0.0])
    cumulative = jnp.asarray([1.0, np.nextafter(np.float32(1.0), np.float32(2.0)), 2.0,
                              np.nextafter(np.float32(2.0), np.float32(3.0))])
    assert int(first_exceeding(cumulative, increments, jnp.asarray(1.0))) == 2   # not 1
    assert int(first_exceeding(cumulative, increments, jnp.asarray(0.5))) == 0
    assert int(first_exceeding(cumulative, increments, jnp.asarray(2.0))) == 2   # rounded up to the total


def test_pick_by_weight_matches_probabilities_across_blocks():
    p = np.zeros(3 * BLOCK + 5)
    p[[0, 3, BLOCK - 1, BLOCK, 2 * BLOCK + 7, p.size - 1]] = [0.05, 0.2, 0.1, 0.3, 0.15, 0.2]
    keys = jax.random.split(jax.random.key(1), 40_000)
    picks = np.asarray(jax.jit(jax.vmap(lambda k: pick_by_weight(k, jnp.asarray(p, jnp.float32))))(keys))
    counts = np.bincount(picks, minlength=p.size)
    assert np.all(counts[p == 0] == 0)
    assert scipy.stats.chisquare(counts[p > 0], 40_000 * p[p > 0]).pvalue > 1e-4


def test_log_prob_matches_scipy():
    fam = GMM(2, 2)
    src = fam.make_params([0.3, 0.7], [[-1.0, 0.0], [2.0, 1.0]], [np.eye(2), [[1.0, 0.5], [0.5, 2.0]]])
    x = np.random.default_rng(0).normal(size=(50, 2)) * 2
    expected = np.log(sum(wk * scipy.stats.multivariate_normal(m, c).pdf(x)
                          for wk, m, c in zip(*(np.asarray(a, np.float64) for a in src))))
    np.testing.assert_allclose(np.asarray(fam.log_prob(src, x)), expected, rtol=2e-5)
    np.testing.assert_allclose(np.asarray(fam.log_prob(src, x)),
                               np.asarray(fam.distribution(src).log_prob(x)), rtol=2e-5)


# ------------------------------------------------------------------ metrics
def test_l2_distance_matches_quadrature(x64):
    fam = GMM(2, 1)
    p = fam.make_params([0.4, 0.6], [[-1.0], [1.0]], [[[0.5]], [[0.2]]])
    q = fam.make_params([1.0], [[0.2]], [[[1.5]]])
    grid = np.linspace(-15, 15, 60_001)
    dens = lambda m: np.exp(np.asarray(fam.log_prob(m, grid[:, None])))  # noqa: E731
    expected = np.trapezoid((dens(p) - dens(q)) ** 2, grid)
    np.testing.assert_allclose(float(mixture_metrics.l2_distance(p, q)), expected, rtol=1e-8)
    assert float(mixture_metrics.l2_distance(p, p)) < 1e-15

    fam2 = GMM(2, 2)
    p2 = fam2.make_params([0.4, 0.6], [[-1.0, 0.0], [1.0, 0.5]], [np.eye(2), [[0.3, 0.1], [0.1, 0.2]]])
    q2 = fam2.make_params([1.0], [[0.0, 0.0]], [np.eye(2)])
    g = np.linspace(-9, 9, 721)  # trapezoid on a smooth, decayed integrand: error far below rtol
    xx = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    d2 = lambda m: np.exp(np.asarray(fam2.log_prob(m, xx))).reshape(len(g), len(g))  # noqa: E731
    expected2 = np.trapezoid(np.trapezoid((d2(p2) - d2(q2)) ** 2, g, axis=1), g)
    np.testing.assert_allclose(float(mixture_metrics.l2_distance(p2, q2)), expected2, rtol=1e-6)


def test_metrics_values():
    fam = GMM(2, 2)
    p = fam.make_params([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [np.diag([1.0, 4.0]), 0.01 * np.eye(2)])
    metrics = jax.jit(fam.metrics)  # one compile per source layout; eager, each of its ops compiles alone
    out = metrics(jax.random.key(0), p, Source(params=fam.make_params([1.0], [[0.0, 0.0]], [np.eye(2)])))
    np.testing.assert_allclose(np.asarray(out["component_std"]), [np.sqrt(2.5), 0.1], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["log_det_cov"]), [np.log(4.0), np.log(1e-4)], rtol=1e-5)
    np.testing.assert_allclose(float(out["weight_entropy"]), np.log(2.0), rtol=1e-6)
    assert float(out["l2_to_source"]) > 0
    assert "l2_to_source" not in metrics(jax.random.key(0), p, Source(data=jnp.zeros((5, 2))))
    x = np.asarray(fam.sample(jax.random.key(0), p, 100))
    np.testing.assert_allclose(float(mixture_metrics.heldout_loglik(p, x)),
                               float(jnp.mean(fam.log_prob(p, x))), rtol=1e-6)
    # held-out log-likelihood: the model's density (scipy) on the source's held-out real points
    source = fam.make_params([1.0], [[0.0, 0.0]], [np.eye(2)])
    held = np.asarray(fam.sample(jax.random.key(5), source, 300), np.float64)
    out = metrics(jax.random.key(0), p, Source(params=source, heldout=jnp.asarray(held, jnp.float32)))
    dens = sum(wk * scipy.stats.multivariate_normal(m, c).pdf(held)
               for wk, m, c in zip(*(np.asarray(a, np.float64) for a in p)))
    np.testing.assert_allclose(float(out["heldout_loglik"]), np.mean(np.log(dens)), rtol=1e-5)
    assert "heldout_loglik" not in metrics(jax.random.key(0), p, Source(params=source))


def test_l2_to_generation_equals_pairwise_distances(x64):
    rng = np.random.default_rng(2)
    covs = np.eye(2) * rng.uniform(0.2, 1.0, size=(3, 4, 2, 1, 1))  # [chains, generations, K, d, d]
    hist = GMMParams(np.full((3, 4, 2), 0.5), rng.normal(size=(3, 4, 2, 2)), covs)
    got = mixture_metrics.l2_to_generation(hist, 1)
    assert got.shape == (3, 4)
    for c, g in itertools.product(range(3), range(4)):
        expected = mixture_metrics.l2_distance(GMMParams(*(a[c, g] for a in hist)), GMMParams(*(a[c, 1] for a in hist)))
        np.testing.assert_allclose(got[c, g], float(expected), rtol=1e-10, atol=1e-14)
    assert np.all(got[:, 1] < 1e-12) and np.all(got[:, [0, 2, 3]] > 0)
    named = mixture_metrics.l2_to_generation(dict(zip(("weights", "means", "covs"), hist)), 1)
    np.testing.assert_array_equal(named, got)


# ------------------------------------------------------------------ bad input
def test_bad_input_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="reg_covar"):
        GMM(2, 2, reg_covar=-1e-6)
    with pytest.raises(ValueError, match="tol"):
        GMM(2, 2, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        GMM(2, 2, max_iter=0)
    with pytest.raises(ValueError, match="covariance"):
        GMM(2, 2, covariance="tied")
    with pytest.raises(ValueError, match="init"):
        GMM(2, 2, init="kmeans")
    with pytest.raises(ValueError, match="n_components"):
        GMM(0, 2)
    fam = GMM(3, 2)
    with pytest.raises(ValueError, match="n_components"):
        fam.check_settings(2)
    fam.check_settings(3)
    with pytest.raises(ValueError, match="dim"):
        fam.check_source(GMMParams(jnp.ones(1), jnp.zeros((1, 3)), jnp.eye(3)[None]))
    with pytest.raises(ValueError, match="source"):
        fam.check_source(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="weights"):
        fam.make_params([0.5, 0.6], np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    with pytest.raises(ValueError, match="covs"):
        fam.make_params([1.0], np.zeros((1, 2)), -np.eye(2)[None])
    # a single blob (K=1) is a valid source for a K=3 family; so is a data array
    assert fam.check_source(fam.make_params([1.0], [[0.0, 0.0]], [np.eye(2)])).params.weights.shape == (1,)
    assert fam.check_source(np.zeros((10, 2))).data.shape == (10, 2)


def test_lloyd_matches_a_numpy_loop(x64):
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(4, 1, (40, 2))])
    w = rng.integers(0, 3, 100).astype(float)  # weights, zeros included
    start = x[[0, 1, 99]]
    c = start.copy()
    for _ in range(6):
        label = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), 1)
        for k in range(3):
            if w[label == k].sum() > 0:
                c[k] = (w[label == k, None] * x[label == k]).sum(0) / w[label == k].sum()
    got = lloyd(jnp.asarray(start), jnp.asarray(x.T), jnp.asarray(w), 6)
    np.testing.assert_allclose(np.asarray(got), c, rtol=1e-12)


# ------------------------------------------------------------------ sums over the points
@pytest.fixture
def sums_mode(execution):
    return lambda mode: execution(sums=mode)


def test_fused_reductions_give_the_products_em_and_lloyd(x64, sums_mode):
    # "reduce" is what accelerators run (em/reductions.py); "product" is checked against scikit-learn above
    rng = np.random.default_rng(5)
    x = jnp.asarray(_two_clusters(rng, 2))
    w = jnp.asarray(rng.exponential(size=len(x)))
    start = MixtureParams(jnp.array([0.5, 0.5]), x[jnp.array([0, 1])], jnp.stack([jnp.eye(2)] * 2))
    runs = {}
    for mode in ("product", "reduce"):
        sums_mode(mode)
        (params, trace) = em_trace(start, x, w, n_steps=20, covariance="full", reg_covar=1e-6)
        runs[mode] = (params, trace, lloyd(x[:3], x.T, w, 5))
    (p_prod, t_prod, c_prod), (p_red, t_red, c_red) = runs["product"], runs["reduce"]
    for got, want in [(p_red.means, p_prod.means), (p_red.covs, p_prod.covs), (t_red, t_prod), (c_red, c_prod)]:
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-11, atol=1e-13)


def test_an_unknown_way_of_summing_is_a_value_error(sums_mode):
    from jaxcollapse import settings

    with pytest.raises(ValueError, match="sums must be one of 'auto', 'product', 'reduce'.*'matmul'"):
        sums_mode("matmul")
    with pytest.raises(ValueError, match="JAXCOLLAPSE_SUMS must be one of 'auto', 'product', 'reduce'.*'matmul'"):
        settings.read_environment({"JAXCOLLAPSE_SUMS": "matmul"})


@pytest.mark.parametrize("K,dim", [(2, 1), (2, 2), (3, 2), (3, 5)])  # K = 3: the max-and-sum path; 5: the general one
def test_mean_log_lik_is_the_weighted_mixture_log_likelihood(x64, K, dim):
    from scipy.special import logsumexp

    rng = np.random.default_rng(K * 10 + dim)
    x = rng.normal(size=(200, dim)) * 2.0
    w = rng.uniform(0, 2, 200) * (rng.uniform(size=200) > 0.2)
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(size=(K, dim))
    a = rng.normal(size=(K, dim, dim))
    covs = a @ np.swapaxes(a, -1, -2) + 0.3 * np.eye(dim)
    joint = np.stack([np.log(weights[k]) + scipy.stats.multivariate_normal(means[k], covs[k]).logpdf(x).reshape(-1)
                      for k in range(K)])
    ref = np.sum(w * logsumexp(joint, axis=0)) / np.sum(w)
    got = densities.mean_log_lik(MixtureParams(*map(jnp.asarray, (weights, means, covs))), jnp.asarray(x.T), jnp.asarray(w))
    np.testing.assert_allclose(float(got), ref, rtol=1e-12)
