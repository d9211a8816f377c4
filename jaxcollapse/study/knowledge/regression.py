"""The linear-regression family's study knowledge: the source from a [source] table, the risk ratio
to generation 0 (derived from the w histories), and the closed forms of theory/regression.py over its
figures (OLS, a source without a synthetic share)."""
from __future__ import annotations

import numpy as np

from jaxcollapse.study.knowledge.base import Knowledge, parametric_source, recorded, register_knowledge
from jaxcollapse.theory import regression as tr


@register_knowledge("linear_regression")
class RegressionKnowledge(Knowledge):
    def source_from_table(self, family, table: dict):
        """[source]: w (default: ones / sqrt(d)), cov or std (covariates N(0, std^2 I)), noise_std,
        synthetic_shift or shift_norm (a shift of that length along ones / sqrt(d)), synthetic_share."""
        table = dict(table)
        std = table.pop("std", None)
        if std is not None and "cov" in table:
            raise ValueError(f"std = {std!r}: give either source.std or source.cov, not both")
        if std is not None:
            table["cov"] = (std ** 2 * np.eye(family.dim)).tolist()
        norm = table.pop("shift_norm", None)
        if norm is not None and "synthetic_shift" in table:
            raise ValueError(f"shift_norm = {norm!r}: give either source.shift_norm or source.synthetic_shift")
        if norm is not None:
            table["synthetic_shift"] = (norm * _unit(family.dim)).tolist()
        table.setdefault("w", _unit(family.dim).tolist())
        return family.make_params(**table)

    def derived_names(self, family, config: dict) -> list[str]:
        return ["risk_ratio"] if recorded(config, ("w",)) and parametric_source(config) else []

    def derived_metrics(self, family, config: dict, source, params: dict) -> dict:
        """risk_ratio: each chain's excess risk over the mean generation-0 excess risk of the run's chains,
        so its chain mean is E R_g / E R_0 (a per-chain ratio R_g / R_0 would be heavy-tailed)."""
        error = np.asarray(params["w"], np.float64) - np.asarray(source.w, np.float64)
        risk = np.einsum("cgd,de,cge->cg", error, np.asarray(source.cov, np.float64), error)
        return {"risk_ratio": (risk / risk[:, 0].mean()).astype(np.asarray(params["w"]).dtype)}

    def theory_curves(self, family, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        source = config["source"]
        if (not parametric_source(config) or family.ridge != 0.0 or source.get("synthetic_share", 0.0) != 0.0
                or metric not in ("excess_risk", "param_error", "risk_ratio")):
            return []
        regime = config["regime"]["kind"]
        if regime not in ("replace", "accumulate"):
            return []
        g = np.asarray(generations, dtype=float)
        t, d = config["run"]["n_samples"], family.dim
        if t <= d + 1:
            return []
        cov = _cov(source, d)
        per_fit = float(np.trace(np.linalg.inv(cov))) if metric == "param_error" else float(d)
        args = dict(n_samples=t, dim=d, noise_std=family.noise_std, real_noise_std=source.get("noise_std", family.noise_std),
                    per_fit=per_fit)
        if regime == "replace":
            value = tr.ols_replace_expected_error(g, **args)
            label = r"theory $(\sigma_r^2 + g\sigma^2)\,d/(T-d-1)$"
        else:
            value = tr.ols_accumulate_expected_error(g, design=family.design, **args)
            label = r"theory, $\sum_k 1/k^2$ pathway"
        if metric != "risk_ratio":
            return [(value, label)]
        at_zero = tr.ols_replace_expected_error(0, **args)  # generation 0 is a fit on real data in every regime
        curves = [(value / at_zero, "theory: E R_g / E R_0")]
        if regime == "accumulate":
            curves.append((np.full_like(g, np.pi ** 2 / 6), r"limit $\pi^2/6$ (T $\to \infty$ for a random design)"))
        return curves


def _unit(dim: int) -> np.ndarray:
    return np.ones(dim) / np.sqrt(dim)


def _cov(source: dict, dim: int) -> np.ndarray:
    if "cov" in source:
        return np.asarray(source["cov"], float)
    return source.get("std", 1.0) ** 2 * np.eye(dim)
