"""Studies: a TOML config (config) built into Plans (build), run with checkpoints (run), analysed (analysis)
and drawn (figures), with what the study knows of each family kept in knowledge."""
from jaxcollapse.study.analysis import (
    collapse_rule,
    collapse_times,
    derived_metrics,
    derived_names,
    describe_config,
    describe_rule,
    summary,
)
from jaxcollapse.study.build import Plan, build, default_chunk, known_metrics, plan_study, run_digest
from jaxcollapse.study.figures import plot
from jaxcollapse.study.named import COLLAPSE_RULES, METRICS, register_collapse_rule, register_metric
from jaxcollapse.study.run import StudyOutcome, environment, run_plan, run_study

__all__ = ["COLLAPSE_RULES", "METRICS", "Plan", "StudyOutcome", "build", "collapse_rule", "collapse_times", "default_chunk",
           "derived_metrics", "derived_names", "describe_config", "describe_rule", "environment", "known_metrics", "plan_study",
           "plot", "register_collapse_rule", "register_metric", "run_digest", "run_plan", "run_study", "summary"]
