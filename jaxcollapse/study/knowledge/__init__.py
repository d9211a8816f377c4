"""Study knowledge, per registered family name: how a TOML [source] becomes the family's source, which
metrics are derived after the run, the default collapse rule, the closed forms drawn over figures, the
family's own figures and its fitted density under 2-D snapshots. A family class holds none of it.

A family of one's own declares its knowledge (optional) beside it::

    @register_knowledge("poisson")
    class PoissonKnowledge(Knowledge):
        def collapse_rule(self, family, config):
            return {"metric": "rate", "below": 0.01}

and the study code asks knowledge_for(family).collapse_rule(family, config).
"""
# the built-in families' knowledge: importing each module registers it
from jaxcollapse.study.knowledge import categorical, gaussian, gmm, kde, ngram, regression, transformer  # noqa: F401
from jaxcollapse.study.knowledge.base import (
    KNOWLEDGE,
    Knowledge,
    knowledge_for,
    parametric_source,
    recorded,
    register_knowledge,
)

__all__ = ["KNOWLEDGE", "Knowledge", "knowledge_for", "parametric_source", "recorded", "register_knowledge"]
