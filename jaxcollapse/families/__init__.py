"""Model families: one file (or folder) each, registered by name in REGISTRY."""
from jaxcollapse.families.base import REGISTRY, Family, SufficientStats, register
from jaxcollapse.families.categorical import Categorical, CategoricalParams
from jaxcollapse.families.gaussian import Gaussian, GaussianParams
from jaxcollapse.families.gmm import GMM, GMMParams
from jaxcollapse.families.kde import KDE, KDEParams, MoonsParams
from jaxcollapse.families.ngram import NGram, NGramParams
from jaxcollapse.families.regression import LinearRegression, RegressionParams, RegressionSource
from jaxcollapse.families.transformer import Transformer, TransformerParams
from jaxcollapse.families.vae import VAE, VAEParams

__all__ = ["GMM", "KDE", "REGISTRY", "VAE", "Categorical", "CategoricalParams", "Family", "GMMParams", "Gaussian",
           "GaussianParams", "KDEParams", "LinearRegression", "MoonsParams", "NGram", "NGramParams", "RegressionParams",
           "RegressionSource", "SufficientStats", "Transformer", "TransformerParams", "VAEParams", "register"]
