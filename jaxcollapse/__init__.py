"""jaxcollapse: model-collapse chains as one compiled JAX program."""
from jaxcollapse import metrics, mixture_metrics, theory
from jaxcollapse.chain import ChainProgram, Result, simulate
from jaxcollapse.families import Categorical, CategoricalParams, FitInfo, Gaussian, GaussianParams, SourceRef
from jaxcollapse.families.gmm import GMM, GMMParams
from jaxcollapse.families.vae import VAE, VAEParams
from jaxcollapse.io import load
from jaxcollapse.regimes import Regime, accumulate, accumulate_subsample, fresh_real, keep_real, replace

__version__ = "0.1.0"

__all__ = ["GMM", "VAE", "Categorical", "CategoricalParams", "ChainProgram", "FitInfo", "GMMParams", "Gaussian",
           "GaussianParams", "Regime", "Result", "SourceRef", "VAEParams", "accumulate", "accumulate_subsample",
           "fresh_real", "keep_real", "load", "metrics", "mixture_metrics", "replace", "simulate", "theory"]
