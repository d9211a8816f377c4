"""The Categorical family's study knowledge: a uniform die by default, collapse at support size 1,
and the exact expected support size (Wright-Fisher law) over its figures."""
from __future__ import annotations

import numpy as np

from jaxcollapse.study.knowledge.base import Knowledge, parametric_source, recorded, register_knowledge
from jaxcollapse.theory.categorical import categorical_expected_support


@register_knowledge("categorical")
class CategoricalKnowledge(Knowledge):
    def source_from_table(self, family, table: dict):
        table = {"probs": [1.0 / family.n_states] * family.n_states, **table}
        return family.make_params(**table)

    def collapse_rule(self, family, config: dict) -> dict:
        return {"metric": "support_size", "below": 2} if recorded(config, ("support_size",)) else {}

    def theory_curves(self, family, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        if not parametric_source(config) or config["regime"]["kind"] != "replace" or metric != "support_size":
            return []
        if config["run"]["n_samples"] > 5000:
            return []  # the exact law costs O(n_samples^2) per generation
        probs = np.asarray(config["source"].get("probs", np.full(family.n_states, 1.0 / family.n_states)), float)
        return [(categorical_expected_support(np.asarray(generations, int), config["run"]["n_samples"], probs),
                 "theory E[support size] (exact)")]
