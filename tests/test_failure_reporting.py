"""Honest aggregates: failed chains are left out from their failure generation on, and the text says so."""
from types import SimpleNamespace

import numpy as np

from jaxcollapse.study import analysis
from jaxcollapse.types import FitInfo

N_CHAINS, N_GEN = 6, 10


def _results(fail_at: dict[int, int]):
    """Six chains whose metric is chain + generation; chain c's fits fail from generation fail_at[c] on."""
    metric = np.add.outer(np.arange(N_CHAINS), np.arange(N_GEN + 1)).astype(float)
    finite = np.ones((N_CHAINS, N_GEN + 1), bool)
    for chain, g in fail_at.items():
        finite[chain, g:] = False
        metric[chain, g:] = np.nan if chain % 2 else 1e6  # what a broken fit's metrics could read
    info = FitInfo(n_iter=np.zeros_like(finite, np.int32), converged=finite, log_lik=np.zeros(finite.shape),
                   finite=finite)
    config = {"family": {"name": "gaussian", "dim": 1}, "collapse": {"metric": "m", "below": -1.0}}
    return SimpleNamespace(config=config, n_generations=N_GEN, n_chains=N_CHAINS, metrics={"m": metric},
                           info=info, manifest={"wall_seconds": 1.0, "chain_generations_per_second": 66.0,
                                                "backend": "cpu"})


def test_failure_generations_and_the_values_kept():
    res = _results({1: 7, 4: 3})
    failed_from = analysis.failure_generations(res)
    np.testing.assert_array_equal(failed_from, [-1, 7, -1, -1, 3, -1])
    kept = analysis.sound(res.metrics["m"], failed_from)
    assert np.isnan(kept[1, 7:]).all() and np.isfinite(kept[1, :7]).all()
    assert np.isnan(kept[4, 3:]).all() and np.isfinite(kept[[0, 2, 3, 5]]).all()
    assert analysis.describe_failures(failed_from) == "2 failed from g = 3, the last at g = 7"


def test_summary_medians_ignore_failed_chains_and_say_how_many_were_kept():
    res = _results({1: 7, 4: 3})
    text = analysis.summary(res)
    assert "2 failed from g = 3, the last at g = 7" in text
    table = [line.split() for line in text.splitlines()]
    rows = {int(cells[0]): cells[1:] for cells in table if cells and cells[0].isdigit()}
    assert sorted(rows) == [0, 1, 2, 5, 10]
    for g, (chains, median) in rows.items():
        alive = [c for c in range(N_CHAINS) if not ((c == 1 and g >= 7) or (c == 4 and g >= 3))]
        assert int(chains) == len(alive)
        assert float(median) == np.median(np.asarray(alive, float) + g)  # a plain NumPy median of the kept chains
    assert "nan" not in text


def test_a_failed_chain_counts_as_collapsed_at_its_failure_generation():
    res = _results({1: 7, 4: 3})
    values = res.metrics["m"].copy()
    values[2, 5:] = -2.0  # chain 2 crosses the threshold at generation 5 and never fails
    times = analysis.collapse_times(values, {"metric": "m", "below": -1.0}, analysis.failure_generations(res))
    np.testing.assert_array_equal(times, [-1, 7, 5, -1, 3, -1])


def test_no_failure_no_note():
    res = _results({})
    text = analysis.summary(res)
    assert "failed" not in text and "chains" in text.splitlines()[0]
