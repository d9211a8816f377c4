"""The GMM family's study knowledge: the L2 distance to generation 0's mixture (the paper's curve)
and its fitted mixture's contours over 2-D snapshots."""
from __future__ import annotations

import numpy as np

from jaxcollapse import mixture_metrics
from jaxcollapse.study.knowledge.base import Knowledge, recorded, register_knowledge

PARAMS = ("weights", "means", "covs")


@register_knowledge("gmm")
class GMMKnowledge(Knowledge):
    def derived_names(self, family, config: dict) -> list[str]:
        return ["l2_to_generation0"] if recorded(config, PARAMS) else []

    def derived_metrics(self, family, config: dict, source, params: dict) -> dict:
        return {"l2_to_generation0": mixture_metrics.l2_to_generation(params, 0)}

    def fitted_density_2d(self, family, params: dict | None, chain: int, generation: int):
        if not params or not set(PARAMS) <= set(params) or family.dim != 2:
            return None
        return tuple(np.asarray(params[name][chain, generation], np.float64) for name in PARAMS)
