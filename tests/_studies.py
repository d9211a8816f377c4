"""Tiny study configs shared by the CLI / io / plots tests (seconds to compile and run)."""
from pathlib import Path

DICE = """
name = "tiny_dice"
description = "a tiny die for tests"

[family]
name = "categorical"
n_states = 4

[regime]
kind = "replace"

[run]
n_chains = 16
n_generations = 6
n_samples = 12
seed = 3
chunk_size = 2
snapshot_at = [0, 6]
"""

GAUSSIAN_SWEEP = """
name = "tiny_sweep"
description = "a tiny sweep for tests"

[family]
name = "gaussian"
dim = 1
ddof = 0

[source]
std = 2.0

[run]
n_chains = 8
n_generations = 4
n_samples = 6
chunk_size = 2
snapshot_at = [4]

[sweep]
"run.seed" = [0, 1]
"""

REGIME_SWEEP = GAUSSIAN_SWEEP.replace('"run.seed" = [0, 1]',
                                      'regime = [{ kind = "replace" }, { kind = "keep_real", fraction = 0.5 }]')

_RUNS = {}


def finished(tmp_path_factory, text: str):
    """Run a study once per test session (compiles are the slow part) and return its StudyOutcome."""
    from jaxcollapse import study

    if text not in _RUNS:
        tmp = tmp_path_factory.mktemp("study")
        _RUNS[text] = study.run_study(write(tmp, text), tmp / "out", plots=False, show_progress=False)
    return _RUNS[text]


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path

TINY_GMM = """
name = "tiny_gmm"
description = "a tiny GMM study for tests"

[family]
name = "gmm"
n_components = 2
dim = 2
tol = 1e-4
max_iter = 50

[source]
weights = [1.0]
means = [[0.0, 0.0]]
covs = [[[1.0, 0.0], [0.0, 1.0]]]

[run]
n_chains = 4
n_generations = 3
n_samples = 60
chunk_size = 2
snapshot_at = [0, 3]
metrics = ["component_std", "heldout_loglik", "weights", "means", "covs"]
"""
