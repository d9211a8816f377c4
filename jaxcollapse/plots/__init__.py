"""Figures of results directories (matplotlib without pyplot): core (every run and sweep), language (n-gram
and transformer chains), quality (filters, curation, feedback). They read results and take what a study
knows of the family (closed forms, collapse rule, fitted density) as arguments; jaxcollapse.study.plot(DIR)
draws every figure of a directory."""
from jaxcollapse.plots.core import BAND, fan_chart, plot_compare, plot_metric, plot_snapshots, points_and_density

__all__ = ["BAND", "fan_chart", "plot_compare", "plot_metric", "plot_snapshots", "points_and_density"]
