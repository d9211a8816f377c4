"""The n-gram family's study knowledge: its source is the shipped corpus tokenized as the family
says, a chain has collapsed when its text is one token type, and the held-context Wright-Fisher
law of the collision probability is drawn over its figures where it applies."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxcollapse.datasets import load_text
from jaxcollapse.plots import language as plots_language
from jaxcollapse.study.knowledge.base import Knowledge, recorded, register_knowledge
from jaxcollapse.theory import language as theory_language
from jaxcollapse.types import Source

SOURCE_KEYS = ("heldout_fraction", "split_seed")


@register_knowledge("ngram")
class NGramKnowledge(Knowledge):
    def figures(self, family, results, folder) -> list:
        """The paper's figures for one run: generated-text perplexity histograms, held-out perplexity, support."""
        if "generated_perplexity" not in results.metrics:
            return []
        runs = {results.name: results}
        written = [plots_language.perplexity_histograms(runs, folder / "perplexity_histograms.png")]
        if "heldout_perplexity" in results.metrics:
            written.append(plots_language.heldout_perplexity(runs, folder / "heldout_perplexity_fan.png"))
        if {"vocabulary_size", "ngram_support_size"} <= set(results.metrics):
            written.append(plots_language.support(runs, folder / "support.png"))
        return written

    def source_from_table(self, family, table: dict):
        """[source] heldout_fraction = 0.1, split_seed = 0: the shipped corpus as load_text(family.tokenizer,
        family.block, vocab_size=family.vocab_size) blocks, training and held-out (a jc.Source)."""
        unknown = sorted(set(table) - set(SOURCE_KEYS))
        if unknown:
            raise ValueError(f"{unknown[0]} is not a setting of the n-gram source; allowed: {', '.join(SOURCE_KEYS)} "
                             "(the corpus is the shipped Python documentation, tokenized by family.tokenizer)")
        split_seed = table.get("split_seed", 0)
        if isinstance(split_seed, float) and split_seed.is_integer():
            split_seed = int(split_seed)
        text = load_text(family.tokenizer, family.block, heldout_fraction=table.get("heldout_fraction", 0.1),
                         vocab_size=family.vocab_size, seed=split_seed)
        if len(text.vocab) != family.vocab_size:
            raise ValueError(f"vocab_size = {family.vocab_size}, but the corpus's {family.tokenizer} vocabulary has "
                             f"{len(text.vocab)} tokens (<unk> included); set family.vocab_size = {len(text.vocab)}")
        return Source(data=text.train, heldout=text.heldout)

    def collapse_rule(self, family, config: dict) -> dict:
        return {"metric": "vocabulary_size", "below": 2} if recorded(config, ("vocabulary_size",)) else {}

    def held_contexts(self, family, config: dict, n_data: int) -> bool:
        """Whether every row is a Wright-Fisher chain: contexts held at real prompts (block = order,
        prompted, or order 1), every real block prompting once, exact refits, replace."""
        exact = (float(family.smoothing) == 0.0 and float(family.temperature) == 1.0 and int(family.top_k) == 0
                 and float(family.top_p) == 1.0)
        held = family.order == 1 or (family.prompted and family.block == family.order)
        return exact and held and config["regime"]["kind"] == "replace" and config["run"]["n_samples"] == n_data

    def theory_curves(self, family, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        if metric != "collision" or "data" in config["source"] or "dataset" in config["source"]:
            return []
        source = self.source_from_table(family, config["source"])
        if not self.held_contexts(family, config, source.data.shape[0]):
            return []
        counts = family.stats(jnp.asarray(source.data), jnp.ones(source.data.shape[0]))
        return [(theory_language.ngram_expected_collision(np.asarray(generations), np.asarray(counts)),
                 "theory E[collision] (Wright-Fisher rows)")]
