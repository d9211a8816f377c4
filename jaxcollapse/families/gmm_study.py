"""The GMM family's study knowledge: the L2 distance to generation 0's mixture (the paper's curve)
and its fitted mixture's contours over 2-D snapshots."""
from __future__ import annotations

import numpy as np

from jaxcollapse.families.study_base import StudyKnowledge, recorded

PARAMS = ("weights", "means", "covs")


class GMMStudy(StudyKnowledge):
    def derived_names(self, config: dict) -> list[str]:
        return ["l2_to_generation0"] if recorded(config, PARAMS) else []

    def derived_metrics(self, config: dict, source, params: dict) -> dict:
        from jaxcollapse import mixture_metrics

        return {"l2_to_generation0": mixture_metrics.l2_to_generation(params, 0)}

    def fitted_density_2d(self, params: dict | None, chain: int, generation: int):
        if not params or not set(PARAMS) <= set(params) or self.dim != 2:
            return None
        return tuple(np.asarray(params[name][chain, generation], np.float64) for name in PARAMS)
