"""Model families: one file (or folder) each, registered by name in REGISTRY."""
from jaxcollapse.families.base import (
    HOOKS,
    REGISTRY,
    ChainSource,
    Family,
    FamilyBase,
    FitInPieces,
    HeldOut,
    LocalCoordinates,
    PointStruct,
    RecordParams,
    ResizeParams,
    SufficientStats,
    family,
    hooks,
    register,
)
from jaxcollapse.families.categorical import Categorical, CategoricalParams
from jaxcollapse.families.gaussian import Gaussian, GaussianParams
from jaxcollapse.families.gmm import GMM, GMMParams
from jaxcollapse.families.kde import KDE, KDEParams, MoonsParams
from jaxcollapse.families.ngram import NGram, NGramParams
from jaxcollapse.families.regression import LinearRegression, RegressionParams, RegressionSource
from jaxcollapse.families.transformer import Transformer, TransformerParams
from jaxcollapse.families.vae import VAE, VAEParams

__all__ = ["Categorical", "CategoricalParams", "ChainSource", "Family", "FamilyBase", "FitInPieces", "GMM", "GMMParams",
           "Gaussian", "GaussianParams", "HOOKS", "HeldOut", "KDE", "KDEParams", "LinearRegression", "LocalCoordinates",
           "MoonsParams", "NGram", "NGramParams", "PointStruct", "REGISTRY", "RecordParams", "RegressionParams",
           "RegressionSource", "ResizeParams", "SufficientStats", "Transformer", "TransformerParams", "VAE", "VAEParams",
           "family", "hooks", "register"]
