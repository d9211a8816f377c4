"""The KDE family's study knowledge: a blob or two moons from a [source] table, the variance recursion
of theory/kde.py over its points_variance figure (replace), and its density's contours over 2-D snapshots."""
from __future__ import annotations

import numpy as np

from jaxcollapse.study.knowledge.base import Knowledge, parametric_source, register_knowledge
from jaxcollapse.theory import kde as theory_kde


@register_knowledge("kde")
class KDEKnowledge(Knowledge):
    def source_from_table(self, family, table: dict):
        """[source]: moons_noise = s (two moons, dim 2), or a blob: mean, and cov or std (default N(0, I))."""
        table = dict(table)
        if "moons_noise" in table:
            extra = sorted(set(table) - {"moons_noise"})
            if extra:
                raise ValueError(f"moons_noise = {table['moons_noise']!r}: two moons take no other keys, got {extra}")
            return family.make_moons(table["moons_noise"])
        std = table.pop("std", None)
        if std is not None and "cov" in table:
            raise ValueError(f"std = {std!r}: give either source.std or source.cov, not both")
        if std is not None:
            table["cov"] = (std ** 2 * np.eye(family.dim)).tolist()
        return family.make_blob(**table)

    def theory_curves(self, family, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        if metric != "points_variance" or config["regime"]["kind"] != "replace" or not parametric_source(config):
            return []
        n = config["run"]["n_samples"]
        if n < 2:
            return []
        source = config["source"]
        if "moons_noise" in source:
            trace = theory_kde.two_moons_trace_cov(source["moons_noise"])
        elif "cov" in source:
            trace = float(np.trace(np.asarray(source["cov"], float)))
        else:
            trace = family.dim * source.get("std", 1.0) ** 2
        values = theory_kde.kde_expected_points_variance(generations, n, family.bandwidth, trace, family.dim)
        return [(values, r"theory E tr $S^2_g$"),
                (np.full(np.shape(generations), theory_kde.kde_variance_limit(n, family.bandwidth, family.dim)),
                 r"limit $(n-1)\,d\,h^2$")]

    def fitted_density_2d(self, family, params: dict | None, chain: int, generation: int):
        if not params or not {"points", "weights", "bandwidth"} <= set(params) or family.dim != 2:
            return None
        points = np.asarray(params["points"][chain, generation], np.float64)
        weights = np.asarray(params["weights"][chain, generation], np.float64)
        h = float(params["bandwidth"][chain, generation])
        keep = weights > 0
        return weights[keep], points[keep], np.broadcast_to(h ** 2 * np.eye(2), (int(keep.sum()), 2, 2))
