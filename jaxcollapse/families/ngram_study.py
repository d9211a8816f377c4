"""The n-gram family's study knowledge: its source is the shipped corpus tokenized as the family
says, a chain has collapsed when its text is one token type, and the held-context Wright-Fisher
law of the collision probability is drawn over its figures where it applies."""
from __future__ import annotations

import numpy as np

from jaxcollapse.families.study_base import StudyKnowledge, recorded

SOURCE_KEYS = ("heldout_fraction", "split_seed")


class NGramStudy(StudyKnowledge):
    def figures(self, results, folder) -> list:
        """The paper's figures for one run: generated-text perplexity histograms, held-out perplexity, support."""
        from jaxcollapse.plots import language as plots_language

        if "generated_perplexity" not in results.metrics:
            return []
        runs = {results.name: results}
        written = [plots_language.perplexity_histograms(runs, folder / "perplexity_histograms.png")]
        if "heldout_perplexity" in results.metrics:
            written.append(plots_language.heldout_perplexity(runs, folder / "heldout_perplexity_fan.png"))
        if {"vocabulary_size", "ngram_support_size"} <= set(results.metrics):
            written.append(plots_language.support(runs, folder / "support.png"))
        return written

    def source_from_table(self, table: dict):
        """[source] heldout_fraction = 0.1, split_seed = 0: the shipped corpus as load_text(self.tokenizer,
        self.block, vocab_size=self.vocab_size) blocks, training and held-out (a jc.Source)."""
        from jaxcollapse.datasets import load_text
        from jaxcollapse.types import Source

        unknown = sorted(set(table) - set(SOURCE_KEYS))
        if unknown:
            raise ValueError(f"{unknown[0]} is not a setting of the n-gram source; allowed: {', '.join(SOURCE_KEYS)} "
                             "(the corpus is the shipped Python documentation, tokenized by family.tokenizer)")
        split_seed = table.get("split_seed", 0)
        if isinstance(split_seed, float) and split_seed.is_integer():
            split_seed = int(split_seed)
        text = load_text(self.tokenizer, self.block, heldout_fraction=table.get("heldout_fraction", 0.1),
                         vocab_size=self.vocab_size, seed=split_seed)
        if len(text.vocab) != self.vocab_size:
            raise ValueError(f"vocab_size = {self.vocab_size}, but the corpus's {self.tokenizer} vocabulary has "
                             f"{len(text.vocab)} tokens (<unk> included); set family.vocab_size = {len(text.vocab)}")
        return Source(data=text.train, heldout=text.heldout)

    def collapse_rule(self, config: dict) -> dict:
        return {"metric": "vocabulary_size", "below": 2} if recorded(config, ("vocabulary_size",)) else {}

    def held_contexts(self, config: dict, n_data: int) -> bool:
        """Whether every row is a Wright-Fisher chain: contexts held at real prompts (block = order,
        prompted, or order 1), every real block prompting once, exact refits, replace."""
        exact = (float(self.smoothing) == 0.0 and float(self.temperature) == 1.0 and int(self.top_k) == 0
                 and float(self.top_p) == 1.0)
        held = self.order == 1 or (self.prompted and self.block == self.order)
        return exact and held and config["regime"]["kind"] == "replace" and config["run"]["n_samples"] == n_data

    def theory_curves(self, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        from jaxcollapse import theory

        if metric != "collision" or "data" in config["source"] or "dataset" in config["source"]:
            return []
        source = self.source_from_table(config["source"])
        if not self.held_contexts(config, source.data.shape[0]):
            return []
        import jax.numpy as jnp

        counts = self.stats(jnp.asarray(source.data), jnp.ones(source.data.shape[0]))
        return [(theory.ngram_expected_collision(np.asarray(generations), np.asarray(counts)),
                 "theory E[collision] (Wright-Fisher rows)")]
