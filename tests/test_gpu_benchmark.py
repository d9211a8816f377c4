"""benchmarks/gpu.py --smoke: the prepared GPU benchmark runs every case end to end (tiny, on CPU) and writes
a JSON holding every case, so the script is known to work when a session is next lent a GPU.

One run of the script (each case in its own process); compiling the GMM and VAE programs is most of it, so it
runs with the slow tests (pytest -m slow).
"""
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MEASURED = ["gmm_paper", "em_step", "gaussian", "vae", "transformer", "ngram", "linear_regression", "kde",
            "scaling_gaussian", "scaling_gmm"]
JAX_VERSION = tuple(int(part) for part in jax.__version__.split(".")[:2])


def _run(*args):
    # XLA's EM, as on an accelerator: the smoke run's schedule comparison expects the same fits from the
    # scan and the lanes, and on a CPU the scan would otherwise run the native EM (rounded differently)
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAXCOLLAPSE_NATIVE="off",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_smoke_run_writes_every_case(tmp_path):
    out = tmp_path / "gpu"
    done = _run(out, "--smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu.json").read_text())

    names = [case["name"] for case in report["cases"]]
    assert names == MEASURED, names
    assert report["smoke"] is True
    assert report["device"]["platform"] == "cpu" and report["device"]["kind"]
    assert {"jax", "jaxlib", "flax", "optax", "numpyro", "python"} <= set(report["versions"])
    for case in report["cases"]:
        if case["name"] == "em_step":  # microseconds per EM iteration per way of summing, not chain-generations
            assert case["status"] == "ok" and [row["config"] for row in case["rows"]] == [
                "product/float32", "product/default", "reduce/float32"], case
            for row in case["rows"]:  # here "this device" is the CPU: the product agrees bit for bit, reductions round
                assert row["us_per_iteration"] > 0 and row["agreement_means"] < 1e-5 and row["agreement_covs"] < 1e-5
            assert case["rows"][0]["agreement_means"] == 0.0 and case["goal_value"] > 0
            continue
        assert case["status"] == "ok", case
        assert case["rows"], case
        for row in case["rows"]:
            for field in ("chain_generations_per_second", "wall_seconds"):
                assert row[field] is not None and math.isfinite(row[field]) and row[field] > 0, (case["name"], row)
            assert row["n_chains"] >= 1 and row["generations_timed"] >= 1
            assert row["compile_seconds"] is not None and row["compile_seconds"] >= 0
            assert row["peak_bytes_in_use"] is None  # CPU keeps no allocator statistics
    by_name = {case["name"]: case for case in report["cases"]}
    assert len(by_name["scaling_gaussian"]["rows"]) == 2  # the sweep doubled once, then hit its cap
    lanes = by_name["gmm_paper"]["rows"][0]["lanes"]
    assert 0 < lanes["lane_efficiency"] <= 1 and lanes["max_iterations"] >= lanes["mean_iterations"] >= 1
    comparison = by_name["gmm_paper"]["comparison"]  # the other schedule on the same generations: on a CPU lane by lane
    assert comparison["schedule"] == "cpu" and comparison["chunks"] and comparison["seconds_ratio"] > 0
    if JAX_VERSION < (0, 10):  # there a chain's numbers do not depend on its batch (tests/test_pipeline.py)
        assert comparison["same_fits"] is True
    agreement = by_name["gmm_paper"]["cpu_agreement"]  # here "this device" is the CPU too: the same numbers
    assert len(agreement["max_relative_difference_covs"]) == agreement["generations"] == 3
    assert agreement["max_relative_difference_means"][0] < 1e-5 and agreement["generation0_same_iterations"] == 1.0
    assert by_name["vae"]["goal_value"] > 0 and by_name["vae"]["goal_met"] is None  # smoke: not judged
    assert by_name["transformer"]["rows"][0]["n_chains"] == 2 and by_name["transformer"]["goal_met"] is None
    assert by_name["kde"]["settings"]["study"] == "experiments/kde.toml" and by_name["kde"]["rows"][0]["failed_chains"] == 0
    assert "chain-gen/s" in done.stdout and "gmm_paper" in done.stdout  # the table

    again = _run(out, "--smoke")  # an existing result is never overwritten without --force
    assert again.returncode == 2 and "--force" in again.stderr
    assert json.loads((out / "gpu.json").read_text()) == report
