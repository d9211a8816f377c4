"""adaptive_real holds a Gaussian and a GMM chain within tolerance with less real data than fixed keep_real.

"Holds" (plots_quality.HOLD_LIMIT): at most 10% of chain-generations (g >= 1) have a degradation
above the tolerance, the degradation being the population version of what the stage watches
(Gaussian: KL(source || model), whose expectation the held-out NLL estimates; GMM: minus the held-out
log-likelihood the family records, the same held-out points the stage scores) minus generation 0's.
The studies are the shipped experiments/quality_feedback*.toml, run as `jaxcollapse run` runs them.
"""
from pathlib import Path

import numpy as np
import pytest

from jaxcollapse.plots import quality as plots_quality
from jaxcollapse.store import runs as io
from jaxcollapse.study.build import regime_grid
from jaxcollapse.study.run import run_study

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def outcome_of(sweep):
    adaptive = next(r for r in sweep.values() if "real_share" in r.metrics)
    fixed = next(r for r in sweep.values() if r.config["regime"]["kind"] == "keep_real")
    tolerance = adaptive.config["regime"]["tolerance"]
    _, degradation = plots_quality.feedback_metric(adaptive)
    axes, cells = regime_grid(fixed.config)
    _, fixed_degradation = plots_quality.feedback_metric(fixed)
    breaches = {f: plots_quality.breach_share(fixed_degradation[cells[:, 0] == i], tolerance)
                for i, f in enumerate(axes[0][1])}
    return adaptive, tolerance, degradation, breaches


@pytest.mark.slow
@pytest.mark.parametrize("study", ["quality_feedback.toml", "quality_feedback_gmm.toml"])
def test_adaptive_real_holds_the_tolerance_with_less_real_data_than_fixed_keep_real(study, tmp_path):
    out = run_study(EXPERIMENTS / study, tmp_path / "out", show_progress=False, plots=False).path
    adaptive, tolerance, degradation, breaches = outcome_of(io.Sweep(out))
    holding = sorted(f for f, b in breaches.items() if b <= plots_quality.HOLD_LIMIT)
    assert holding and min(breaches) not in holding, breaches   # the grid brackets the need for real data
    assert plots_quality.breach_share(degradation, tolerance) <= plots_quality.HOLD_LIMIT
    mean_share = float(np.mean(adaptive.metrics["real_share"][:, 1:]))
    assert mean_share < holding[0], (mean_share, breaches)
    # the controller's rule, re-checked from its records: up after a degradation past the tolerance, else down
    stage = adaptive.config["regime"]
    seen, share = adaptive.metrics["feedback_degradation"][:, 1:], adaptive.metrics["real_share"]
    n = adaptive.config["run"]["n_samples"]
    f32 = np.float32  # the stage's arithmetic, so shares on a rounding edge round the same way
    wanted = np.full(share.shape[0], f32(stage["start"]))
    for g in range(1, share.shape[1]):
        raised = seen[:, g - 1] > f32(tolerance)
        wanted = np.clip(np.where(raised, wanted + f32(stage["step_up"]), wanted - f32(stage["step_down"])),
                         f32(0), f32(1))
        np.testing.assert_allclose(share[:, g], np.round(wanted * f32(n)) / f32(n), atol=1e-6)
    if "heldout_loglik" in adaptive.metrics:  # GMM: the stage sees the held-out log-likelihood the family records
        loglik = adaptive.metrics["heldout_loglik"].astype(float)
        np.testing.assert_allclose(seen, -(loglik[:, :-1] - loglik[:, :1]), atol=1e-4)
