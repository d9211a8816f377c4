"""The Transformer family's study knowledge: the n-gram's source (the shipped corpus, tokenized as
the family says) and figures (perplexity histograms, held-out perplexity, support), a chain has
collapsed when the text it writes is one token type, and no closed form is drawn."""
from __future__ import annotations

import numpy as np

from jaxcollapse.families.ngram_study import NGramStudy
from jaxcollapse.families.study_base import recorded


class TransformerStudy(NGramStudy):
    def collapse_rule(self, config: dict) -> dict:
        return {"metric": "vocabulary_size", "below": 2} if recorded(config, ("vocabulary_size",)) else {}

    def theory_curves(self, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        return []
