"""What a family knows about studies (host-side): how a TOML [source] becomes its source, which
metrics are derived from parameter histories, when a chain has collapsed, which closed forms to
draw over its figures, and how to draw its fitted density under a snapshot.

Every hook has a neutral default here; a family overrides the ones it has something to say on
(gaussian_study.py, categorical_study.py, gmm_study.py). study/, plots and config call only these.
"""
from __future__ import annotations

import numpy as np


class StudyKnowledge:
    def source_from_table(self, table: dict):
        """The family's source params from a checked [source] table of numbers (its make_params arguments)."""
        return self.make_params(**table)

    def derived_names(self, config: dict) -> list[str]:
        """Metrics computed after the run from recorded parameter histories (see derived_metrics)."""
        return []

    def derived_metrics(self, config: dict, source, params: dict) -> dict:
        """name -> [n_chains, n_generations + 1] arrays, computed from params (name -> history)."""
        return {}

    def collapse_rule(self, config: dict) -> dict:
        """A default [collapse] rule ({"metric": ..., "below" | "above": ...}), or {} for none."""
        return {}

    def theory_curves(self, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        """(values, label) of closed forms that apply to this run's metric (compared with the MC mean)."""
        return []

    def figures(self, results, folder) -> list:
        """The family's own figures of one finished run (io.Results) into `folder`; paths written."""
        return []

    def fitted_density_2d(self, params: dict | None, chain: int, generation: int):
        """(weights [K], means [K, 2], covs [K, 2, 2]) of a 2-D fit, for contours over snapshots, or None."""
        return None


def recorded(config: dict, names) -> bool:
    """Whether the run records every one of `names` (a run records everything unless run.metrics says)."""
    chosen = config["run"].get("metrics")
    return chosen is None or set(names) <= set(chosen)


def parametric_source(config: dict) -> bool:
    return "data" not in config["source"] and "dataset" not in config["source"]
