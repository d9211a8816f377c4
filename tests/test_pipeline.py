"""Generations lane by lane (engine/pipeline.py): the same records as the scanned program, and its replay."""
import jax
import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse.engine import program, schedule_replay

# Under jax 0.9 a chain's numbers do not depend on the batch it is computed in. Under jax >= 0.10 XLA:CPU's
# kernels round a GMM's sums differently with the batch size (a few float32 ulp at generation 1, with or
# without FMA), and a chain's later generations amplify that: there, generation 1 is compared to rounding.
JAX_VERSION = tuple(int(part) for part in jax.__version__.split(".")[:2])
BATCH_EXACT = JAX_VERSION < (0, 10)


def _records(res, generations=slice(None), snapshots=slice(None)):
    histories = jax.tree_util.tree_leaves((res.params, res.metrics, res.info))
    return [h[:, generations] for h in histories] + [res.snapshots[:, snapshots], jax.random.key_data(res.keys)]


def test_lane_by_lane_equals_the_scanned_program(execution, xla_em):
    """Chains that move on alone (finished lanes concluded in groups, the rest still iterating) give the
    scanned program's records bit for bit: a stage with real data, snapshots, chunks, both lane layouts.
    Chain 0's EM iteration counts differ between generations, so lanes do fall out of step. XLA's EM on
    both sides: the lanes step it."""
    fam = jc.GMM(2, dim=2, tol=1e-5, max_iter=300)
    src = fam.make_params(weights=[0.5, 0.5], means=[[0.0, 0.0], [3.0, 0.0]], covs=[np.eye(2)] * 2)
    settings = dict(n_chains=5, n_generations=4, n_samples=150, regime=jc.keep_real(0.3), snapshot_at=(0, 3))

    def run(schedule, **extra):
        execution(schedule=schedule)
        return jc.simulate(jax.random.key(3), fam, src, **settings, **extra)

    scanned = run("scan")
    assert len(np.unique(scanned.info.n_iter[:, 1:])) > 3            # fits of unequal lengths
    for schedule, extra in [("lanes", dict(chunk_size=3)), ("lanes-accelerator", {})]:
        lanes = run(schedule, **extra)
        if BATCH_EXACT:
            for a, b in zip(_records(scanned), _records(lanes), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=schedule)
        else:
            early = dict(generations=slice(0, 2), snapshots=slice(0, 1))
            for a, b in zip(_records(scanned, **early), _records(lanes, **early), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=schedule)


def test_schedule_setting_is_checked(execution):
    with pytest.raises(ValueError, match="schedule must be one of 'auto', 'scan', 'lanes'.*'fast'"):
        execution(schedule="fast")


def test_schedule_choice():
    """Lane by lane only for a family with its fit in pieces; on a CPU "auto" keeps the scan."""
    assert program.schedule(jc.Gaussian(dim=1)) == "scan"
    assert program.schedule(jc.GMM(2, dim=2)) == ("scan" if jax.default_backend() == "cpu" else "accelerator")


def test_replay_of_the_two_accelerator_schedules():
    """Two lanes, two generations (iterations [[1, 3], [2, 2]]): scanned, each generation waits for its
    slowest fit (3 + 2 trips of both lanes). Lane by lane, lane 0 finishes first and, being half the
    active lanes, is concluded alone; both finish together at trip 3; lane 1's last fit takes 2 more."""
    n_iter = np.array([[1, 3], [2, 2]])
    assert schedule_replay.scanned_accelerator(n_iter) == 10
    counts = schedule_replay.lane_by_lane_counts(n_iter, "accelerator")
    assert counts == {"lane_iterations": 10, "trips": 5, "groups": 3}   # the last: lane 1 alone
    # one lane slow in each generation: scanned pays both maxima; lane by lane, each lane's own total
    n_iter = np.array([[1, 9], [9, 1]] * 3)
    assert schedule_replay.scanned_accelerator(n_iter) == 6 * 9 * 2
    assert schedule_replay.efficiency(n_iter, "scan-accelerator") == pytest.approx(60 / 108)
    assert schedule_replay.lane_by_lane_counts(n_iter, "accelerator")["trips"] == 30
