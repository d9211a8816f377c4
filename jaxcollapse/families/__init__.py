"""Model families: one file each, frozen dataclasses with pure fit/sample/log_prob."""
from jaxcollapse.families.base import FitInfo, SourceRef
from jaxcollapse.families.categorical import Categorical, CategoricalParams
from jaxcollapse.families.gaussian import Gaussian, GaussianParams
from jaxcollapse.families.gmm import GMM, GMMParams
from jaxcollapse.families.vae import VAE, VAEParams

__all__ = ["GMM", "VAE", "Categorical", "CategoricalParams", "FitInfo", "GMMParams", "Gaussian", "GaussianParams",
           "SourceRef", "VAEParams"]
