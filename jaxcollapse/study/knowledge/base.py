"""What a study knows about a family, kept apart from the family class: the registry, the neutral default,
and the helpers the per-family modules share."""
from __future__ import annotations

import numpy as np

from jaxcollapse._registry import same_definition

KNOWLEDGE: dict[str, Knowledge] = {}


class Knowledge:
    """A family's study knowledge (host-side). Every method takes the family first; each default says nothing
    family-specific, so a family that declares no knowledge still runs in a study."""

    def source_from_table(self, family, table: dict):
        """The family's source params from a checked [source] table of numbers (its make_params arguments)."""
        return family.make_params(**table)

    def derived_names(self, family, config: dict) -> list[str]:
        """Metrics computed after the run from recorded parameter histories (see derived_metrics)."""
        return []

    def derived_metrics(self, family, config: dict, source, params: dict) -> dict:
        """name -> [n_chains, n_generations + 1] arrays, computed from params (name -> history)."""
        return {}

    def collapse_rule(self, family, config: dict) -> dict:
        """A default [collapse] rule ({"metric": ..., "below" | "above": ...}), or {} for none."""
        return {}

    def theory_curves(self, family, config: dict, metric: str, generations) -> list[tuple[np.ndarray, str]]:
        """(values, label) of closed forms that apply to this run's metric (compared with the MC mean)."""
        return []

    def figures(self, family, results, folder) -> list:
        """The family's own figures of one finished run (a store Results) into `folder`; paths written."""
        return []

    def fitted_density_2d(self, family, params: dict | None, chain: int, generation: int):
        """(weights [K], means [K, 2], covs [K, 2, 2]) of a 2-D fit, for contours over snapshots, or None."""
        return None


def register_knowledge(name: str):
    """Class decorator: KNOWLEDGE[name] = cls(), the study knowledge of the family registered as `name`."""

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Knowledge)):
            raise TypeError(f"register_knowledge({name!r}) decorates a subclass of Knowledge, got {cls!r}")
        known = KNOWLEDGE.get(name)
        # the same definition run again (a plugin file edited and imported anew) takes the name over
        if known is not None and not same_definition(type(known), cls):
            raise ValueError(f"study knowledge for the family {name!r} is already registered "
                             f"({type(known).__name__})")
        KNOWLEDGE[name] = known if type(known) is cls else cls()
        return cls

    return decorate


_DEFAULT = Knowledge()


def knowledge_for(family) -> Knowledge:
    """The study knowledge registered under the family's name (type(family).registry_name), or the neutral default."""
    return KNOWLEDGE.get(getattr(type(family), "registry_name", None), _DEFAULT)


def recorded(config: dict, names) -> bool:
    """Whether the run records every one of `names` (a run records everything unless run.metrics says)."""
    chosen = config["run"].get("metrics")
    return chosen is None or set(names) <= set(chosen)


def parametric_source(config: dict) -> bool:
    """Whether the source is the family's own params (not a data file or a built-in dataset)."""
    return "data" not in config["source"] and "dataset" not in config["source"]
