"""The Gaussian family's study knowledge: source from std/cov, derived std / mean error / det ratio,
the collapse rule std < 0.1 sigma, and the closed forms of jaxcollapse.theory.gaussian over its figures.

The derived metrics come from the recorded covariance, a float32 matrix that underflows for a deeply
collapsed chain (std below ~1e-19 reads 0); the engine's log_var and log_det_cov are exact at any depth."""
from __future__ import annotations

import math

import numpy as np

from jaxcollapse.study.knowledge.base import Knowledge, parametric_source, recorded, register_knowledge
from jaxcollapse.theory import gaussian as theory


@register_knowledge("gaussian")
class GaussianKnowledge(Knowledge):
    def source_from_table(self, family, table: dict):
        table = dict(table)
        std = table.pop("std", None)
        if std is not None and "cov" in table:
            raise ValueError(f"std = {std!r}: give either source.std or source.cov, not both")
        table.setdefault("mean", [0.0] * family.dim)
        if "cov" not in table:
            std = 1.0 if std is None else std
            table["cov"] = (std ** 2 * np.eye(family.dim)).tolist()
        return family.make_params(**table)

    def derived_names(self, family, config: dict) -> list[str]:
        if not recorded(config, ("mean", "cov")):
            return []
        names = ["std"] if family.dim == 1 else []
        if parametric_source(config):
            names += ["mean_sq_error", "det_ratio"]
        return names

    def derived_metrics(self, family, config: dict, source, params: dict) -> dict:
        names = self.derived_names(family, config)
        mean, cov = np.asarray(params["mean"]), np.asarray(params["cov"])
        out = {}
        if "std" in names:
            out["std"] = np.sqrt(cov[..., 0, 0])
        if "mean_sq_error" in names:
            out["mean_sq_error"] = np.sum((mean - np.asarray(source.mean)) ** 2, axis=-1)
        if "det_ratio" in names:
            _, logdet = np.linalg.slogdet(cov.astype(np.float64))
            _, logdet0 = np.linalg.slogdet(np.asarray(source.cov, np.float64))
            out["det_ratio"] = np.exp(logdet - logdet0).astype(cov.dtype)
        return out

    def collapse_rule(self, family, config: dict) -> dict:
        if "std" not in self.derived_names(family, config):
            return {}
        return {"metric": "std", "below": 0.1 * _source_cov(config, family.dim)[0, 0] ** 0.5}

    def theory_curves(self, family, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        if not parametric_source(config) or family.lam != 1.0 or family.reg_covar != 0.0:
            return []
        regime = config["regime"]["kind"]
        g = np.asarray(generations, dtype=float)
        m, dim, ddof = config["run"]["n_samples"], family.dim, family.ddof
        cov = _source_cov(config, dim)
        curves = []
        if regime == "replace":
            if metric == "log_var" and dim == 1:
                curves.append((theory.gaussian_expected_log_var(g, m, math.sqrt(cov[0, 0]), ddof),
                               r"theory E[log $\sigma_g^2$]"))
            if metric == "log_det_cov" and m > dim:
                log_det0 = float(np.linalg.slogdet(cov)[1])
                curves.append((theory.mvn_expected_log_det(g, m, dim, log_det0, ddof), r"theory E[log det $\Sigma_g$]"))
            if dim == 1:
                sigma = math.sqrt(cov[0, 0])
                if metric == "std":
                    curves.append((theory.gaussian_expected_std(g, m, sigma, ddof), r"theory E[$\sigma_g$]"))
                if metric == "mean_sq_error":
                    curves.append((theory.gaussian_expected_mean_sq_error(g, m, sigma, ddof),
                                   r"theory E[$(\mu_g-\mu)^2$]"))
            if ddof == 0 and metric == "mean_sq_error" and dim > 1:
                curves.append((theory.mvn_expected_mean_sq_error(g, m, np.trace(cov)), r"theory E$\|\mu_g-\mu_0\|^2$"))
            if ddof == 0 and metric == "det_ratio":
                curves.append((theory.mvn_expected_det_ratio(g, m, dim), r"theory E[det $\Sigma_g$]/det $\Sigma_0$"))
        if regime == "accumulate" and ddof == 0 and metric == "mean_sq_error":
            curves.append((theory.mvn_accumulate_mean_sq_error_bound(g, m, np.trace(cov)), "theory: upper bound"))
        return curves

    def fitted_density_2d(self, family, params: dict | None, chain: int, generation: int):
        if not params or not {"mean", "cov"} <= set(params) or family.dim != 2:
            return None
        mean, cov = (np.asarray(params[name][chain, generation], np.float64) for name in ("mean", "cov"))
        return np.ones(1), mean[None], cov[None]


def _source_cov(config: dict, dim: int) -> np.ndarray:
    source = config["source"]
    if "cov" in source:
        return np.asarray(source["cov"], float)
    return source.get("std", 1.0) ** 2 * np.eye(dim)
