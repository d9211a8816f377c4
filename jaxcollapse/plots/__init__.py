"""Figures of results directories (matplotlib without pyplot): core (every run and sweep), language (n-gram
and transformer chains), quality (filters, curation, feedback)."""
from jaxcollapse.plots.core import BAND, fan_chart, plot, plot_run, plot_sweep

__all__ = ["BAND", "fan_chart", "plot", "plot_run", "plot_sweep"]
