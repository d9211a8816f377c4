"""Figures render headless (Agg), with theory overlays where a closed form applies."""
import matplotlib
import numpy as np
from PIL import Image

from jaxcollapse import plots

from _studies import DICE, GAUSSIAN_SWEEP, finished


def _is_png(path):
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100


def test_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


def test_run_figures(tmp_path_factory):
    path = finished(tmp_path_factory, DICE).path
    written = plots.plot(path)
    names = {p.name for p in written}
    assert {"entropy.png", "support_size.png", "collapse_times.png", "support_decay.png", "snapshots.png"} <= names
    assert all(_is_png(p) for p in written)


def test_sweep_figures_and_gaussian_snapshots(tmp_path_factory):
    path = finished(tmp_path_factory, GAUSSIAN_SWEEP).path
    written = plots.plot(path)
    names = {p.name for p in written}
    assert {"compare_std.png", "std.png", "mean_sq_error.png", "snapshots.png"} <= names
    assert all(_is_png(p) for p in written)


def test_theory_overlay_matches_the_formula():
    from jaxcollapse import theory

    config = {"family": {"name": "gaussian", "dim": 1, "ddof": 1}, "regime": {"kind": "replace"},
              "source": {"std": 2.0}, "run": {"n_samples": 10}}
    g = np.arange(5)
    (curve, label), = plots.theory_curves(config, "std", g)
    np.testing.assert_allclose(curve, theory.gaussian_expected_std(g, 10, 2.0, 1))
    assert plots.theory_curves({**config, "regime": {"kind": "accumulate"}}, "std", g) == []
    assert plots.theory_curves({**config, "family": {"name": "categorical", "n_states": 3}}, "entropy", g) == []


def test_log_axes_when_values_span_decades():
    assert plots._log_apt(np.array([1.0, 1e-4]))
    assert not plots._log_apt(np.array([1.0, 0.5]))
    assert not plots._log_apt(np.array([0.0, 1.0]))
