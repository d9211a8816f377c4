"""A results folder never harms what is not the tool's: the marker, --force, --resume, the lock, stale temp files."""
import json
import os
import socket
import subprocess
import sys

import pytest
from _studies import DICE, GAUSSIAN_SWEEP, write

import jaxcollapse
from jaxcollapse import cli
from jaxcollapse.store.folder import LOCK, MARKER, FolderError, ResultsFolder

TINY = ["--no-plots", "--no-progress"]


def _foreign(folder):
    """A researcher's files: what must survive, byte for byte."""
    (folder / "data").mkdir(parents=True)
    files = {folder / "data" / "measurements.csv": b"x,y\n1,2\n", folder / "thesis.tex": b"\\chapter{Collapse}"}
    for path, content in files.items():
        path.write_bytes(content)
    return files


def _survived(files):
    return all(path.exists() and path.read_bytes() == content for path, content in files.items())


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- the reported data loss
def test_a_folder_the_tool_did_not_make_is_never_used(tmp_path, capsys):
    folder = tmp_path / "x"
    files = _foreign(folder)
    (folder / "config.json").write_text("{}")  # a foreign config.json: once enough to be taken for results
    files[folder / "config.json"] = b"{}"
    study = str(write(tmp_path, DICE))
    for flag in ("--force", "--resume"):
        assert cli.main(["run", study, "--out", str(folder), flag, *TINY]) == 1
        assert "jaxcollapse did not make it" in _one_line(capsys.readouterr().err)
        assert _survived(files) and sorted(p.name for p in folder.iterdir()) == ["config.json", "data", "thesis.tex"]


def test_force_and_resume_delete_only_what_the_tool_wrote(tmp_path, capsys):
    study, out = str(write(tmp_path, DICE)), tmp_path / "out"
    assert cli.main(["run", study, "--out", str(out), *TINY]) == 0
    files = _foreign(out)  # the researcher adds files to the results folder afterwards
    (out / "figures").mkdir()
    (out / "figures" / "mine.png").write_bytes(b"png")
    files[out / "figures" / "mine.png"] = b"png"
    before = (out / "metrics.npz").stat().st_mtime_ns
    assert cli.main(["run", study, "--out", str(out), "--force", "--set", "run.seed=5", *TINY]) == 0
    assert _survived(files)
    assert (out / "metrics.npz").stat().st_mtime_ns != before
    assert jaxcollapse.load(out).config["run"]["seed"] == 5
    assert cli.main(["run", study, "--out", str(out), "--resume", "--set", "run.seed=5", *TINY]) == 0
    assert "already complete" in capsys.readouterr().err
    assert _survived(files)


def test_force_refuses_a_file_changed_since_the_tool_wrote_it(tmp_path):
    folder = ResultsFolder.claim(tmp_path / "r", study={"name": "s", "runs": [""]})
    folder.write_json("config.json", {"a": 1})
    folder.release()
    edited = tmp_path / "r" / "config.json"
    edited.write_text('{"a": 1, "my note": "edited by hand"}')
    with pytest.raises(FolderError, match="config.json was changed after jaxcollapse wrote it"):
        ResultsFolder.claim(tmp_path / "r", force=True, study={"name": "s", "runs": [""]})
    assert "my note" in edited.read_text()
    # and a new run refuses to write over a file of someone else's of the same name
    folder = ResultsFolder.claim(tmp_path / "q", study={"name": "s", "runs": [""]})
    (tmp_path / "q" / "metrics.npz").write_bytes(b"mine")
    with pytest.raises(FolderError, match="refusing to overwrite"):
        folder.write_npz("metrics.npz", {"x": [1]})
    assert (tmp_path / "q" / "metrics.npz").read_bytes() == b"mine"
    folder.release()


def test_an_unreadable_marker_is_refused_and_leaves_no_lock(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / MARKER).write_text("{not json")
    with pytest.raises(FolderError, match="unreadable"):
        ResultsFolder.claim(tmp_path / "r", force=True)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [MARKER]


def test_an_empty_folder_is_used_and_kept(tmp_path):
    (tmp_path / "empty").mkdir()
    folder = ResultsFolder.claim(tmp_path / "empty", study={"name": "s", "runs": [""]})
    folder.write_json("config.json", {})
    folder.release()
    marker = json.loads((tmp_path / "empty" / MARKER).read_text())
    assert marker["made"] is False and list(marker["files"]) == ["config.json"]


# ---------------------------------------------------------------- another study, another live run
def test_resume_into_another_study_is_refused(tmp_path, capsys):
    out = tmp_path / "dice"
    assert cli.main(["run", str(write(tmp_path, DICE)), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    sweep = str(write(tmp_path, GAUSSIAN_SWEEP, "sweep.toml"))
    assert cli.main(["run", sweep, "--out", str(out), "--resume", *TINY]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "cannot resume" in line and "holds study 'tiny_dice', not study 'tiny_sweep' (2 runs)" in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert isinstance(jaxcollapse.load(out), jaxcollapse.store.Results)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_of_a_live_run_refuses_and_a_dead_one_is_taken_over(tmp_path):
    path = tmp_path / "r"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.mkdir()
        (path / MARKER).write_text(json.dumps({"jaxcollapse": 1, "made": True, "study": None, "files": {},
                                               "folders": [], "scratch": []}))
        (path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": live.pid}))
        with pytest.raises(FolderError, match=f"in use by another jaxcollapse run \\(pid {live.pid}\\)"):
            ResultsFolder.claim(path, resume=True)
    finally:
        live.kill()
        live.wait()
    (path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    folder = ResultsFolder.claim(path, resume=True)
    assert json.loads((path / LOCK).read_text())["pid"] == os.getpid()
    folder.release()
    assert not (path / LOCK).exists()
    (path / LOCK).write_text(json.dumps({"host": "another-host", "pid": 1}))
    with pytest.raises(FolderError, match="in use by a jaxcollapse run on another-host"):
        ResultsFolder.claim(path, resume=True)


def test_stale_temp_files_are_removed_only_in_the_tools_folders(tmp_path):
    folder = ResultsFolder.claim(tmp_path / "r", study={"name": "s", "runs": [""]})
    scratch = folder.make_scratch("checkpoint")
    folder.release()
    ours = [tmp_path / "r" / ".config.json.abcd_123.jaxcollapse-tmp", scratch / ".state.json.zz99zz99.jaxcollapse-tmp"]
    theirs = [tmp_path / "r" / ".draft.abcd1234.tmp", tmp_path / "r" / "config.json.jaxcollapse-tmp"]
    for path in ours + theirs:
        path.write_text("x")
    elsewhere = tmp_path / ".config.json.abcd_123.jaxcollapse-tmp"  # next to the folder, not in it
    elsewhere.write_text("x")
    ResultsFolder.claim(tmp_path / "r", resume=True, study={"name": "s", "runs": [""]}).release()
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs) and elsewhere.exists()


# ---------------------------------------------------------------- one line, never a traceback
def test_out_under_a_file_or_unwritable_is_one_line(tmp_path, capsys, monkeypatch):
    study = str(write(tmp_path, DICE))
    (tmp_path / "file.txt").write_text("x")
    assert cli.main(["run", study, "--out", str(tmp_path / "file.txt" / "out"), *TINY]) == 1
    assert "Not a directory" in _one_line(capsys.readouterr().err)
    assert cli.main(["run", study, "--out", str(tmp_path / "file.txt"), *TINY]) == 1
    assert "exists and is not a folder" in _one_line(capsys.readouterr().err)
    # a read-only file system and a folder without write permission (simulated: tests may run as root)
    import errno
    from pathlib import Path

    for code, text in ((errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied")):
        def refuse(self, *args, _code=code, _text=text, **kwargs):
            raise OSError(_code, _text, str(self))

        monkeypatch.setattr(Path, "mkdir", refuse)
        assert cli.main(["run", study, "--out", str(tmp_path / "ro" / "out"), *TINY]) == 1
        assert f"error: {text}: {tmp_path / 'ro' / 'out'}" == _one_line(capsys.readouterr().err).split("jaxcollapse: ")[1]
        monkeypatch.undo()


def test_a_folder_of_studies_is_one_line(tmp_path, capsys):
    write(tmp_path, DICE, "a.toml")
    assert cli.main(["run", str(tmp_path), *TINY]) == 2
    assert "is a folder, not a TOML file; the studies in it: a.toml" in _one_line(capsys.readouterr().err)


def test_a_missing_package_is_one_line_naming_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert cli.main(["run", "paper_vae", "--out", str(tmp_path / "o"), *TINY]) == 1
    assert "pip install scikit-learn" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_scikit_learn_is_a_runtime_dependency():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("scikit-learn") for dep in project["dependencies"])  # the digits of paper_vae


def test_plot_and_summary_of_a_missing_folder(tmp_path, capsys):
    for command in ("plot", "summary", "export"):
        assert cli.main([command, str(tmp_path / "nowhere")]) == 1
        assert _one_line(capsys.readouterr().err) == f"jaxcollapse: error: {tmp_path / 'nowhere'} does not exist"


# ---------------------------------------------------------------- values refused before anything runs
@pytest.mark.parametrize("setting, message", [
    ("family.lam=inf", "family.lam must be a finite number > 0.0, got inf"),
    ("family.reg_covar=inf", "family.reg_covar must be a finite number >= 0.0, got inf"),
    ("name=../escaped", 'name = "../escaped" (not a plain name)'),
    ("name=a/b", 'name = "a/b" (not a plain name)'),
])
def test_bad_values_are_refused(tmp_path, capsys, monkeypatch, setting, message):
    study = write(tmp_path, GAUSSIAN_SWEEP.split("[sweep]")[0])
    monkeypatch.chdir(tmp_path)  # a default --out (results/<name>) would land here
    assert cli.main(["run", str(study), "--set", setting, *TINY]) == 2
    assert message in _one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


def test_gmm_reg_covar_inf_is_refused():
    with pytest.raises(ValueError, match="reg_covar must be a finite number"):
        jaxcollapse.GMM(2, dim=2, reg_covar=float("inf"))


def test_a_history_too_large_is_refused_with_its_size(tmp_path, capsys):
    study = write(tmp_path, DICE)
    assert cli.main(["run", str(study), "--out", str(tmp_path / "o"), "--set", "run.n_chains=10000000",
                     "--set", "run.n_generations=100000", *TINY]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "the recorded history needs" in line and "TiB" in line and "n_chains=10000000" in line
    assert not (tmp_path / "o").exists()


def test_history_size_counts_every_recorded_byte(tmp_path_factory):
    """The up-front size equals the bytes a finished run actually holds (records and snapshots)."""
    from _studies import finished

    from jaxcollapse.study import footprint

    outcome = finished(tmp_path_factory, DICE)
    res = jaxcollapse.load(outcome.path)
    held = sum(a.nbytes for part in (res.metrics, res.params, res.info._asdict()) for a in part.values()) \
        + res.snapshots.nbytes
    assert footprint.history_bytes(outcome.plans[0].program) == held
    with pytest.raises(ValueError, match=r"needs .* over the 1\.00 KiB allowed"):
        footprint.check_history(outcome.plans[0].program, limit=1024)


# ---------------------------------------------------------------- shrinking a run
def test_fewer_generations_than_the_study_snapshots(tmp_path, capsys):
    """`--set run.n_generations=N` below the study's snapshot_at drops those snapshots, with a notice."""
    from jaxcollapse import study as study_lib
    from jaxcollapse.study import run as run_lib

    study = write(tmp_path, DICE)  # snapshot_at = [0, 6]
    overrides, notice = run_lib._drop_late_snapshots(study, ["run.n_generations=4"])
    assert notice == "note: run.n_generations = 4: the study's snapshots at generation 6 are dropped " \
                     "(run.snapshot_at = [0])"
    _, (plan,) = study_lib.plan_study(study, overrides)
    assert plan.config["run"]["snapshot_at"] == [0] and plan.program.spec.snapshot_at == (0,)
    assert run_lib._drop_late_snapshots(study, ["run.n_generations=6"]) == (["run.n_generations=6"], None)
    # an explicit snapshot_at beyond the run is still an error
    assert cli.main(["run", str(study), "--out", str(tmp_path / "o2"), "--set", "run.n_generations=4",
                     "--set", "run.snapshot_at=[0,6]", *TINY]) == 2
    assert "run.snapshot_at = [0, 6] (out of range)" in _one_line(capsys.readouterr().err)


def test_npy_source(tmp_path):
    import numpy as np

    from jaxcollapse import study as study_lib

    data = np.random.default_rng(0).normal(size=(200, 1)).astype(np.float32)
    np.save(tmp_path / "real.npy", data)
    text = GAUSSIAN_SWEEP.split("[source]")[0] + '[source]\ndata = "real.npy"\n'
    _, plans = study_lib.plan_study(write(tmp_path, text))
    np.testing.assert_array_equal(plans[0].source, data)
