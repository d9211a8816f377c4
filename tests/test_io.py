"""Results directories: save/load round trip, tidy tables, checkpoints with typed keys, no overwrite."""
import sys

import jax
import numpy as np
import pytest
from _studies import DICE, GAUSSIAN_SWEEP, finished

import jaxcollapse
from jaxcollapse import io


@pytest.fixture(scope="module")
def dice_run(tmp_path_factory):
    return finished(tmp_path_factory, DICE)


def test_load_round_trip_equals_simulate(dice_run):
    res = jaxcollapse.load(dice_run.path)
    assert isinstance(res, io.Results)
    plan = dice_run.plans[0]
    direct = jaxcollapse.simulate(jax.random.key(3), plan.family, plan.source, n_chains=16, n_generations=6,
                                  n_samples=12, snapshot_at=[0, 6], chunk_size=2)
    assert set(res.metrics) == set(direct.metrics)
    for name, values in direct.metrics.items():
        assert res.metrics[name].shape == (16, 7)
        np.testing.assert_array_equal(res.metrics[name], values)
    np.testing.assert_array_equal(res.params["probs"], direct.params.probs)
    np.testing.assert_array_equal(res.snapshots, direct.snapshots)
    assert res.snapshot_at == (0, 6)
    np.testing.assert_array_equal(res.info["chain_key_data"], jax.random.key_data(direct.keys))
    assert res.config["run"]["n_chains"] == 16
    for key in ("jaxcollapse", "jax", "devices", "seed", "wall_seconds", "chain_generations_per_second"):
        assert key in res.manifest
    assert not (dice_run.path / "checkpoint.npz").exists()


def test_npz_loads_with_plain_numpy(dice_run):
    with np.load(dice_run.path / "metrics.npz", allow_pickle=False) as npz:
        assert npz["entropy"].shape == (16, 7)


def test_tidy_table(dice_run):
    res = jaxcollapse.load(dice_run.path)
    table = res.tidy()
    assert len(table["chain"]) == 16 * 7
    assert table["chain"][7] == 1 and table["generation"][7] == 0
    np.testing.assert_array_equal(table["entropy"][7:14], res.metrics["entropy"][1])


def test_to_dataframe_without_pandas_says_how(dice_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        jaxcollapse.load(dice_run.path).to_dataframe()


def test_to_dataframe_with_pandas(dice_run):
    pd = pytest.importorskip("pandas")
    frame = jaxcollapse.load(dice_run.path).to_dataframe()
    assert list(frame.columns[:2]) == ["chain", "generation"] and len(frame) == 16 * 7
    assert isinstance(frame, pd.DataFrame)


def test_refuses_to_overwrite_without_force(dice_run, tmp_path):
    with pytest.raises(FileExistsError, match="--force"):
        io.prepare(dice_run.path)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing to delete"):
        io.prepare(other, force=True)
    assert (other / "thesis.tex").read_text() == "precious"


def test_force_overwrites_a_results_dir(tmp_path):
    path = tmp_path / "r"
    path.mkdir()
    io.write_json(path / "config.json", {})
    (path / "stale.txt").write_text("x")
    io.prepare(path, force=True)
    assert list(path.iterdir()) == []


def test_checkpoint_round_trip_with_typed_keys(tmp_path):
    carry = {"key": jax.random.split(jax.random.key(5), 3), "x": np.arange(6, dtype=np.float32).reshape(3, 2)}
    records = ({"m": np.ones((3, 4), np.float32)},)
    io.write_checkpoint(tmp_path, generation=4, carry=carry, records=records, config_digest="abc",
                        wall_seconds=1.5)
    like = jax.eval_shape(lambda: (carry, records))
    generation, back, back_records, wall = io.read_checkpoint(
        tmp_path, carry_like=like[0], records_like=like[1], config_digest="abc")
    assert generation == 4 and wall == 1.5
    assert jax.dtypes.issubdtype(back["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(back["key"]), jax.random.key_data(carry["key"]))
    np.testing.assert_array_equal(back_records[0]["m"], records[0]["m"])
    with pytest.raises(ValueError, match="different config"):
        io.read_checkpoint(tmp_path, carry_like=like[0], records_like=like[1], config_digest="other")


def test_sweep_load(tmp_path_factory):
    sweep = jaxcollapse.load(finished(tmp_path_factory, GAUSSIAN_SWEEP).path)
    assert isinstance(sweep, io.Sweep) and list(sweep) == ["seed-0", "seed-1"]
    assert sweep.settings["seed-1"] == {"run.seed": 1}
    assert not np.array_equal(sweep["seed-0"].metrics["std"], sweep["seed-1"].metrics["std"])
    assert sweep["seed-0"].metrics["std"].shape == (8, 5)
    # the derived std is sqrt of the recorded variance, starting near the source's 2.0
    np.testing.assert_allclose(sweep["seed-0"].metrics["std"] ** 2, sweep["seed-0"].params["cov"][..., 0, 0],
                               rtol=1e-6)
