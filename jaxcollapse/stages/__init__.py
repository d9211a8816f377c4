"""Stages form each generation's training set: mixing regimes, quality checks, feedback, and the protocol."""
from jaxcollapse.stages import scores
from jaxcollapse.stages.base import Pipeline, Stage, per_chain, pipeline, stage
from jaxcollapse.stages.feedback import AdaptiveReal, adaptive_real
from jaxcollapse.stages.mixing import (
                                       REGIMES,
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
                                        Correct,
                                        Curate,
                                        FilterTop,
                                        Verify,
                                        correct,
                                        curate,
                                        filter_top,
                                        gaussian_to_source,
                                        verify,
)

QUALITY_STAGES = {"filter_top": filter_top, "verify": verify, "curate": curate, "correct": correct,
                  "adaptive_real": adaptive_real}

__all__ = ["QUALITY_STAGES", "REGIMES", "Accumulate", "AccumulateSubsample", "AdaptiveReal", "Correct", "Curate",
           "FilterTop", "FreshReal", "KeepReal", "Pipeline", "Replace", "Stage", "Verify", "accumulate",
           "accumulate_subsample", "adaptive_real", "correct", "curate", "filter_top", "fresh_real",
           "gaussian_to_source", "keep_real", "per_chain", "pipeline", "replace", "scores", "stage", "verify"]
