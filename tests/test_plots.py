"""Figures render headless (no pyplot backend chosen), with theory overlays where a closed form applies."""
import subprocess
import sys

import matplotlib
import numpy as np
from _studies import DICE, GAUSSIAN_SWEEP, finished
from PIL import Image

import jaxcollapse as jc
from jaxcollapse import study, theory
from jaxcollapse.plots import core as plots_core
from jaxcollapse.study import figures
from jaxcollapse.study.knowledge import knowledge_for


def _is_png(path):
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100


def test_importing_plots_keeps_the_users_backend():
    code = ("import matplotlib; matplotlib.use('svg'); import jaxcollapse.plots, jaxcollapse.cli; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().lower() == "svg"


def test_run_figures(tmp_path_factory):
    path = finished(tmp_path_factory, DICE).path
    written = study.plot(path)
    names = {p.name for p in written}
    assert {"entropy.png", "support_size.png", "collapse_times.png", "support_decay.png", "snapshots.png"} <= names
    assert all(_is_png(p) for p in written)


def test_sweep_figures_and_gaussian_snapshots(tmp_path_factory):
    path = finished(tmp_path_factory, GAUSSIAN_SWEEP).path
    written = study.plot(path)
    names = {p.name for p in written}
    assert {"compare_std.png", "std.png", "mean_sq_error.png", "snapshots.png"} <= names
    assert all(_is_png(p) for p in written)


def test_theory_overlay_matches_the_formula():
    config = {"family": {"name": "gaussian", "dim": 1, "ddof": 1}, "regime": {"kind": "replace"},
              "source": {"std": 2.0}, "run": {"n_samples": 10}}
    g = np.arange(5)
    (curve, label), = figures.theory_curves(config, "std", g)
    np.testing.assert_allclose(curve, theory.gaussian_expected_std(g, 10, 2.0, 1))
    assert figures.theory_curves({**config, "regime": {"kind": "accumulate"}}, "std", g) == []
    dice = {**config, "family": {"name": "categorical", "n_states": 3}, "source": {"probs": [0.2, 0.3, 0.5]}}
    assert figures.theory_curves(dice, "entropy", g) == []
    (curve, _), = figures.theory_curves(dice, "support_size", g)
    np.testing.assert_allclose(curve, theory.categorical_expected_support(g, 10, [0.2, 0.3, 0.5]))


def test_log_axes_when_values_span_decades():
    assert plots_core._log_apt(np.array([1.0, 1e-4]))
    assert not plots_core._log_apt(np.array([1.0, 0.5]))
    assert not plots_core._log_apt(np.array([0.0, 1.0]))


def test_2d_snapshots_draw_the_fitted_density():
    import matplotlib.pyplot as plt

    x = np.random.default_rng(0).normal(size=(300, 2)) * 0.05 + [3.0, -1.0]
    gmm = {"weights": np.full((1, 2, 2), 0.5), "means": np.tile([3.0, -1.0], (1, 2, 2, 1)),
           "covs": np.tile(np.eye(2) * 0.0025, (1, 2, 2, 1, 1))}
    gaussian = {"mean": gmm["means"][:, :, 0], "cov": gmm["covs"][:, :, 0]}
    for family, params in ((jc.GMM(2, dim=2), gmm), (jc.Gaussian(dim=2), gaussian)):
        mixture = knowledge_for(family).fitted_density_2d(family, params, 0, 1)
        fig, ax = plt.subplots()
        plots_core.points_and_density(ax, x, mixture)
        contours = [c for c in ax.get_children() if isinstance(c, matplotlib.contour.ContourSet)]
        assert len(contours) == 1
        lo, hi = ax.get_xlim()
        assert lo < 3.0 < hi and hi - lo < 1.0  # zoomed on the fit, not the origin
        plt.close(fig)
    gaussian, gmm = jc.Gaussian(dim=3), jc.GMM(2, dim=2)
    assert knowledge_for(gaussian).fitted_density_2d(gaussian, {"mean": np.zeros((1, 2, 3))}, 0, 1) is None
    assert knowledge_for(gmm).fitted_density_2d(gmm, None, 0, 0) is None
