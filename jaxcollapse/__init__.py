"""jaxcollapse: model-collapse chains as one compiled JAX program."""
from jaxcollapse import datasets, metrics, mixture_metrics, settings, testing, theory
from jaxcollapse.engine import Result, simulate
from jaxcollapse.families import (
    GMM,
    KDE,
    REGISTRY,
    VAE,
    Categorical,
    CategoricalParams,
    Family,
    Gaussian,
    GaussianParams,
    GMMParams,
    KDEParams,
    LinearRegression,
    MoonsParams,
    NGram,
    NGramParams,
    RegressionParams,
    RegressionSource,
    SufficientStats,
    Transformer,
    TransformerParams,
    VAEParams,
)
from jaxcollapse.stages import (
    accumulate,
    accumulate_subsample,
    adaptive_real,
    correct,
    curate,
    filter_top,
    fresh_real,
    keep_real,
    pipeline,
    replace,
    scores,
    stage,
    verify,
)
from jaxcollapse.store import load
from jaxcollapse.types import Context, FitInfo, Source, TrainingSet

__version__ = "0.1.0"

__all__ = ["GMM", "KDE", "REGISTRY", "VAE", "Categorical", "CategoricalParams", "Context", "Family", "FitInfo", "GMMParams",
           "Gaussian", "GaussianParams", "KDEParams", "LinearRegression", "MoonsParams", "NGram", "NGramParams",
           "RegressionParams", "RegressionSource", "Result", "Source", "SufficientStats", "TrainingSet", "Transformer",
           "TransformerParams", "VAEParams", "accumulate", "accumulate_subsample", "adaptive_real", "correct", "curate",
           "datasets", "filter_top", "fresh_real", "keep_real", "load", "metrics", "mixture_metrics", "pipeline", "replace",
           "scores", "settings", "simulate", "stage", "testing", "theory", "verify"]
