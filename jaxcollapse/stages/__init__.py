"""Stages form each generation's training set: mixing regimes, and the protocol to write your own."""
from jaxcollapse.stages.base import Pipeline, Stage, per_chain, pipeline, stage
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

__all__ = ["REGIMES", "Accumulate", "AccumulateSubsample", "FreshReal", "KeepReal", "Pipeline", "Replace", "Stage",
           "accumulate", "accumulate_subsample", "fresh_real", "keep_real", "per_chain", "pipeline", "replace", "stage"]
