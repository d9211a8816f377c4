"""Figures made without pyplot: no backend is chosen and no global figure state is touched, so importing
jaxcollapse.plots leaves a notebook's backend as it was."""
from __future__ import annotations

from matplotlib import colormaps
from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """(figure, axes) like pyplot.subplots, on a Figure of its own (saved with fig.savefig)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def colormap_colors(name: str, positions):
    """RGBA colours of the colormap `name` at positions in [0, 1]."""
    return colormaps[name](positions)
