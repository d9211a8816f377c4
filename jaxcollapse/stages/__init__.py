"""Stages form each generation's training set: mixing regimes, quality checks, feedback, and the protocol.

Every stage a study's TOML may name is in STAGES (registry.py), its TOML keys derived from its fields;
the names its keys allow are in SCORES, VERIFIERS, REWARDS, CORRECTIONS and FEEDBACK_METRICS. Each has
its decorator (register_stage, register_score, ...), so a plugin adds names the same way.
"""
from jaxcollapse.stages import scores
from jaxcollapse.stages.base import Pipeline, Stage, per_chain, pipeline, stage
from jaxcollapse.stages.feedback import FEEDBACK_METRICS, AdaptiveReal, adaptive_real, register_feedback_metric
from jaxcollapse.stages.mixing import (
                                       Accumulate,
                                       AccumulateSubsample,
                                       FreshReal,
                                       KeepReal,
                                       Replace,
                                       accumulate,
                                       accumulate_subsample,
                                       fresh_real,
                                       keep_real,
                                       replace,
)
from jaxcollapse.stages.quality import (
                                        CORRECTIONS,
                                        Correct,
                                        Curate,
                                        FilterTop,
                                        Verify,
                                        correct,
                                        curate,
                                        filter_top,
                                        gaussian_to_source,
                                        register_correction,
                                        verify,
)
from jaxcollapse.stages.registry import STAGES, register_stage, toml_keys
from jaxcollapse.stages.scores import REWARDS, SCORES, VERIFIERS, register_reward, register_score, register_verifier

__all__ = ["CORRECTIONS", "FEEDBACK_METRICS", "REWARDS", "SCORES", "STAGES", "VERIFIERS", "Accumulate",
           "AccumulateSubsample", "AdaptiveReal", "Correct", "Curate", "FilterTop", "FreshReal", "KeepReal", "Pipeline",
           "Replace", "Stage", "Verify", "accumulate", "accumulate_subsample", "adaptive_real", "correct", "curate",
           "filter_top", "fresh_real", "gaussian_to_source", "keep_real", "per_chain", "pipeline", "register_correction",
           "register_feedback_metric", "register_reward", "register_score", "register_stage", "register_verifier",
           "replace", "scores", "stage", "toml_keys", "verify"]
