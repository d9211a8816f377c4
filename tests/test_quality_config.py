"""Quality stages in study TOML: pipelines, grid axes (one vmapped run), named errors; the quality figures."""
import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse.plots import quality as plots_quality
from jaxcollapse.study import config
from jaxcollapse.study.build import _regime, build, regime_grid
from jaxcollapse.study.config import ConfigError

PHASE = {
    "family": {"name": "gaussian", "dim": 1},
    "regime": {"kind": "pipeline", "stages": [
        {"kind": "filter_top", "score": "source", "keep": [1.0, 0.5]},
        {"kind": "keep_real", "fraction": [0.0, 0.2, 0.4]},
    ]},
    "run": {"n_chains": 12, "n_generations": 3, "n_samples": 10, "chunk_size": 3},
}


def checked(raw):
    return config.check(raw)


def test_a_pipeline_with_grid_axes_builds_one_program_with_per_chain_numbers():
    cfg = checked(PHASE)
    axes, cells = regime_grid(cfg)
    assert [k for k, _ in axes] == ["regime.stages[0].keep", "regime.stages[1].fraction"]
    assert cells.tolist() == [[0, 0], [0, 0], [0, 1], [0, 1], [0, 2], [0, 2],
                              [1, 0], [1, 0], [1, 1], [1, 1], [1, 2], [1, 2]]
    regime = _regime(cfg)
    assert isinstance(regime, jc.stages.Pipeline)
    np.testing.assert_array_equal(regime.stages[0].keep, np.repeat([1.0, 0.5], 6))
    np.testing.assert_array_equal(regime.stages[1].fraction, np.tile(np.repeat([0.0, 0.2, 0.4], 2), 2))
    assert regime.stages[0].min_keep == 0.5
    for kind, extra in [("verify", {"is_good": "source_support", "keep_good": 0.9, "keep_bad": [0.1, 0.5]}),
                        ("correct", {"fn": "gaussian_to_source", "strength": 0.3}),
                        ("adaptive_real", {"tolerance": 0.1, "step_up": 0.3}),
                        ("curate", {"k": 3, "reward": [0.0, 1.0]})]:
        raw = {**PHASE, "regime": {"kind": kind, **extra}, "run": {**PHASE["run"], "n_chains": 4}}
        assert type(_regime(checked(raw))).__name__.lower().replace("_", "") == kind.replace("_", "")


@pytest.mark.parametrize("stage, match", [
    ({"kind": "filter_top", "score": "source", "keep": 0.0}, r"regime.stages\[0\].keep = 0.0 \(out of range\)"),
    ({"kind": "filter_top", "score": "best", "keep": 0.5}, r"regime.stages\[0\].score = \"best\" \(unknown value\)"),
    ({"kind": "filter_top", "keep": 0.5}, r"regime.stages\[0\].score is missing"),
    ({"kind": "curate", "k": 0, "reward": [0.0, 1.0]}, r"regime.stages\[0\].k = 0 \(out of range\)"),
    ({"kind": "curate", "k": 2, "reward": [0.0, float("nan")]}, r"regime.stages\[0\].reward = \[0.0, NaN\]"),
    ({"kind": "verify", "is_good": "source_support", "keep_good": 0.9, "keep_bad": 0.1, "keep_ugly": 1},
     r"regime.stages\[0\].keep_ugly = 1 \(unknown key\)"),
    ({"kind": "pipeline", "stages": []}, r"regime.stages\[0\].kind = \"pipeline\" \(unknown value\)"),
])
def test_bad_stage_tables_name_their_key(stage, match):
    raw = {**PHASE, "regime": {"kind": "pipeline", "stages": [stage]}}
    with pytest.raises(ConfigError, match=match):
        checked(raw)


def test_a_grid_must_split_the_chains_evenly():
    raw = {**PHASE, "run": {**PHASE["run"], "n_chains": 10}}
    with pytest.raises(ConfigError, match=r"run.n_chains = 10; allowed: a multiple of 6"):
        build("", checked(raw))


def test_a_tiny_phase_study_runs_and_draws_its_figures(tmp_path):
    from jaxcollapse.study.run import run_study

    study = tmp_path / "phase.toml"
    study.write_text('''
name = "phase"
[family]
name = "gaussian"
dim = 1
[regime]
kind = "pipeline"
stages = [{ kind = "filter_top", score = "source", keep = [1.0, 0.5] },
          { kind = "keep_real", fraction = [0.0, 0.2, 0.4] }]
[run]
n_chains = 12
n_generations = 3
n_samples = 10
''')
    outcome = run_study(study, tmp_path / "out", show_progress=False)
    assert (outcome.path / "figures" / "phase_diagram.png").stat().st_size > 10_000


def test_figure_helpers_draw_from_plain_arrays(tmp_path):
    rng = np.random.default_rng(0)
    cells = np.stack(np.unravel_index(np.arange(60) // 5, (3, 4)), axis=1)
    times = np.where(rng.uniform(size=60) < 0.5, rng.integers(0, 50, 60), -1)
    axes = [("keep", [1.0, 0.8, 0.5]), ("fraction", [0.0, 0.1, 0.2, 0.4])]
    paths = [plots_quality.phase_diagram(tmp_path / "phase.png", cells, axes, rng.lognormal(size=60),
                                         distance_label="w2", times=times, rule="std < 0.1", title="t"),
             plots_quality.reward_curve(tmp_path / "reward.png", [(rng.uniform(size=(60, 11)), "r", None)],
                                        [("all", np.ones(60, bool))]),
             plots_quality.feedback_trace(tmp_path / "trace.png", rng.uniform(size=(60, 11)),
                                          rng.normal(size=(60, 11)), 0.1,
                                          fixed=[(0.5, rng.normal(size=(60, 11))), (0.8, rng.normal(size=(60, 11)) / 10)])]
    assert all(p.stat().st_size > 10_000 for p in paths)
