"""The Transformer family's study knowledge: the n-gram's source (the shipped corpus, tokenized as
the family says), figures (perplexity histograms, held-out perplexity, support) and collapse rule (the
text it writes is one token type); no closed form is drawn."""
from __future__ import annotations

import numpy as np

from jaxcollapse.study.knowledge.base import register_knowledge
from jaxcollapse.study.knowledge.ngram import NGramKnowledge


@register_knowledge("transformer")
class TransformerKnowledge(NGramKnowledge):
    def theory_curves(self, family, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        return []
