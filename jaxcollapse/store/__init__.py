"""Results on disk: atomic files (_files) at the bottom; checkpoints; the results folder's ownership marker
(folder: every write and delete goes through it); the tidy export; a run's files and their readers (runs)."""
from jaxcollapse.store.runs import Results, Sweep, load

__all__ = ["Results", "Sweep", "load"]
