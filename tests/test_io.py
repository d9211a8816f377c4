"""Results directories: save/load round trip, tidy tables and exports, checkpoints that cost O(chunk)."""
import sys

import jax
import numpy as np
import pytest
from _studies import DICE, GAUSSIAN_SWEEP, finished

import jaxcollapse
from jaxcollapse.store import checkpoints
from jaxcollapse.store import runs as io


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
    np.testing.assert_array_equal(jax.random.key_data(res.keys), jax.random.key_data(direct.keys))
    np.testing.assert_array_equal(res.info.finite, direct.info.finite)  # the same Result type as simulate's
    np.testing.assert_array_equal(res.chain(3).metrics["entropy"], direct.chain(3).metrics["entropy"])
    assert res.config["run"]["n_chains"] == 16
    for key in ("jaxcollapse", "jax", "devices", "seed", "wall_seconds", "chain_generations_per_second"):
        assert key in res.manifest
    assert not (dice_run.path / "checkpoint").exists()  # removed once the results are written


def test_results_are_compressed(dice_run):
    import zipfile

    for name in ("metrics.npz", "params.npz", "fit_info.npz", "snapshots.npz"):
        with zipfile.ZipFile(dice_run.path / name) as npz:
            assert {info.compress_type for info in npz.infolist()} == {zipfile.ZIP_DEFLATED}, name


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


def test_checkpoint_round_trip_with_typed_keys(tmp_path):
    carry = {"key": jax.random.split(jax.random.key(5), 3), "x": np.arange(6, dtype=np.float32).reshape(3, 2)}
    first = ({"m": np.ones((3, 1), np.float32)},)
    later = ({"m": np.full((3, 3), 2.0, np.float32)},)
    saver = checkpoints.Checkpoint(tmp_path, "abc")
    saver.save(generation=0, first=0, carry=carry, records=first, wall_seconds=0.5)
    saver.save(generation=3, first=1, carry=carry, records=later, wall_seconds=1.5)
    like = jax.eval_shape(lambda: (carry, first))
    _, generation, back, chunks, wall = checkpoints.Checkpoint.resume(
        tmp_path, digest="abc", carry_like=like[0], records_like=like[1])
    assert generation == 3 and wall == 1.5
    assert jax.dtypes.issubdtype(back["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(back["key"]), jax.random.key_data(carry["key"]))
    np.testing.assert_array_equal(back["x"], carry["x"])
    assert len(chunks) == 2
    np.testing.assert_array_equal(chunks[0][0]["m"], first[0]["m"])
    np.testing.assert_array_equal(chunks[1][0]["m"], later[0]["m"])
    with pytest.raises(ValueError, match="different config"):
        checkpoints.Checkpoint.resume(tmp_path, digest="other", carry_like=like[0], records_like=like[1])


def test_a_checkpoint_costs_its_chunk_not_the_history(tmp_path):
    """Each save writes the chunk's records and the carry leaves that changed; nothing earlier is rewritten."""
    n = 50
    carry = {"params": np.zeros((n, 4), np.float32), "snapshots": np.zeros((n, 3, 100), np.float32)}
    saver = checkpoints.Checkpoint(tmp_path, "d")
    saver.save(generation=0, first=0, carry=carry, records={"m": np.zeros((n, 1), np.float32)}, wall_seconds=0.0)
    files_before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    for generation in range(10, 101, 10):
        carry = {"params": carry["params"] + 1, "snapshots": carry["snapshots"]}  # snapshots unchanged
        saver.save(generation=generation, first=generation - 9, carry=carry,
                   records={"m": np.full((n, 10), generation, np.float32)}, wall_seconds=0.0)
    names = sorted(p.name for p in tmp_path.iterdir())
    records = [name for name in names if name.startswith("records-")]
    assert len(records) == 11
    sizes = {(tmp_path / name).stat().st_size for name in records[1:]}
    assert len(sizes) == 1  # every chunk file holds one chunk, however long the history
    # the unchanged snapshot buffer is the file written at generation 0, untouched since
    snapshot_files = [name for name in names if name.startswith("carry-1-")]
    assert snapshot_files == ["carry-1-g000000000.npy"]
    assert (tmp_path / snapshot_files[0]).stat().st_mtime_ns == files_before[snapshot_files[0]]
    assert [name for name in names if name.startswith("carry-0-")] == ["carry-0-g000000100.npy"]  # old ones removed
    like = jax.eval_shape(lambda: (carry, {"m": np.zeros((n, 1), np.float32)}))
    # a records file written after the last state.json (a kill in between) is not part of the state
    (tmp_path / "records-000000101-000000110.npz").write_bytes(b"partial")
    _, generation, back, chunks, _ = checkpoints.Checkpoint.resume(
        tmp_path, digest="d", carry_like=like[0], records_like=like[1])
    assert generation == 100 and not (tmp_path / "records-000000101-000000110.npz").exists()
    np.testing.assert_array_equal(np.concatenate([c["m"] for c in chunks], axis=1)[:, -1], 100.0)
    np.testing.assert_array_equal(back["params"], carry["params"])


def test_export_csv_round_trip(dice_run):
    import csv

    res = jaxcollapse.load(dice_run.path)
    written = res.export(format="csv")
    assert written == dice_run.path / "tidy.csv"
    with open(written, newline="") as f:
        rows = list(csv.reader(f))
    table = res.tidy()
    assert rows[0] == list(table)
    assert len(rows) == 1 + len(table["chain"])
    for j, name in enumerate(table):
        column = np.array([row[j] for row in rows[1:]]).astype(table[name].dtype)
        np.testing.assert_array_equal(column, table[name], err_msg=name)  # exact, float32 included
    # written into the tool's own folder: a second export replaces it; a foreign file elsewhere is kept
    assert res.export(format="csv") == written
    foreign = dice_run.path.parent / "mine.csv"
    foreign.write_text("mine")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        res.export(foreign)
    assert foreign.read_text() == "mine"


def test_export_parquet(dice_run, tmp_path):
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        with pytest.raises(ImportError, match="pip install pyarrow"):
            jaxcollapse.load(dice_run.path).export(tmp_path / "t.parquet", "parquet")
        return
    res = jaxcollapse.load(dice_run.path)
    table = parquet.read_table(res.export(tmp_path / "t.parquet", "parquet")).to_pydict()
    for name, values in res.tidy().items():
        np.testing.assert_array_equal(np.asarray(table[name]), values)


def test_sweep_load(tmp_path_factory):
    sweep = jaxcollapse.load(finished(tmp_path_factory, GAUSSIAN_SWEEP).path)
    assert isinstance(sweep, io.Sweep) and list(sweep) == ["seed-0", "seed-1"]
    assert sweep.settings["seed-1"] == {"run.seed": 1}
    assert not np.array_equal(sweep["seed-0"].metrics["std"], sweep["seed-1"].metrics["std"])
    assert sweep["seed-0"].metrics["std"].shape == (8, 5)
    # the derived std is sqrt of the recorded variance, starting near the source's 2.0
    np.testing.assert_allclose(sweep["seed-0"].metrics["std"] ** 2, sweep["seed-0"].params["cov"][..., 0, 0],
                               rtol=1e-6)


def test_sweep_export_has_run_and_setting_columns(tmp_path_factory):
    sweep = jaxcollapse.load(finished(tmp_path_factory, GAUSSIAN_SWEEP).path)
    table = sweep.tidy()
    assert list(table)[:4] == ["run", "run.seed", "chain", "generation"]
    assert len(table["run"]) == 2 * 8 * 5
    assert set(table["run"]) == {"seed-0", "seed-1"}
    np.testing.assert_array_equal(table["std"][table["run"] == "seed-1"], sweep["seed-1"].tidy()["std"])
    assert sweep.export(format="csv").name == "tidy.csv"
