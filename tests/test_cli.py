"""The `jaxcollapse` command end to end: a tiny run, kill -9 then --resume, errors, list/info/plot."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _studies import DICE, finished, write

import jaxcollapse
from jaxcollapse import cli
from jaxcollapse.store import runs as io

ARRAY_FILES = ("metrics.npz", "params.npz", "fit_info.npz", "snapshots.npz")


def test_run_end_to_end(tmp_path, capsys):
    study = write(tmp_path, DICE)
    out = tmp_path / "out"
    assert cli.main(["run", str(study), "--out", str(out), "--set", "run.seed=4", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "median over 16 chains" in printed and str(out) in printed and "support_size" in printed
    # the final message names every file written, and nothing else
    listed = printed.split("files written (")[1].split("\n", 1)[1].replace(",", " ").split()
    on_disk = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != ".jaxcollapse.json")
    assert sorted(listed) == on_disk == sorted(["study.toml", "config.json", "manifest.json", *ARRAY_FILES])
    res = jaxcollapse.load(out)
    assert res.metrics["support_size"].shape == (16, 7)
    assert res.config["run"]["seed"] == 4 and res.manifest["seed"] == 4
    assert res.manifest["chain_generations_per_second"] > 0
    assert (out / "study.toml").read_text() == DICE
    # a second run into the same directory is refused, and the results are untouched
    before = (out / "metrics.npz").read_bytes()
    assert cli.main(["run", str(study), "--out", str(out), "--no-plots"]) == 1
    assert "--force" in capsys.readouterr().err
    assert (out / "metrics.npz").read_bytes() == before
    # --force reruns it (seed 3 now, so different results)
    assert cli.main(["run", str(study), "--out", str(out), "--no-plots", "--force"]) == 0
    assert (out / "metrics.npz").read_bytes() != before


@pytest.mark.parametrize("override, message", [
    ("run.n_chainz=3", "run.n_chainz = 3 (unknown key"),
    ('run.n_chains="many"', 'run.n_chains = "many" (wrong type: a string); allowed: an integer >= 1'),
    ("run.n_samples=0", "run.n_samples = 0 (out of range); allowed: an integer >= 1"),
])
def test_config_errors_exit_2_with_named_message(tmp_path, capsys, override, message):
    code = cli.main(["run", str(write(tmp_path, DICE)), "--out", str(tmp_path / "o"), "--set", override])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing created before the config is valid


def _checkpoint_generation(path):
    try:
        return int(io.read_json(path / "checkpoint" / "state.json")["generation"])
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return -1


def test_kill_9_then_resume_is_bit_identical(tmp_path, tmp_path_factory, capsys):
    text = DICE.replace("n_generations = 6", "n_generations = 400").replace("snapshot_at = [0, 6]",
                                                                            "snapshot_at = [0, 7, 400]")
    study = write(tmp_path, text)
    killed = tmp_path / "killed"
    cache = tmp_path / "cache"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    for name in ("JAXCOLLAPSE_NO_CACHE", "JAXCOLLAPSE_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR"):
        env.pop(name, None)  # the command line's default: the compilation cache on, here under XDG_CACHE_HOME
    command = [sys.executable, "-m", "jaxcollapse.cli", "run", str(study), "--out", str(killed),
               "--chunk-size", "1", "--no-plots"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _checkpoint_generation(killed) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no checkpoint after 120 s"
        time.sleep(0.01)
    # while it runs, a second run into the same folder is refused (the lock), and changes nothing
    assert cli.main(["run", str(study), "--out", str(killed), "--resume", "--no-plots"]) == 1
    assert f"in use by another jaxcollapse run (pid {proc.pid})" in capsys.readouterr().err
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = _checkpoint_generation(killed)
    assert 2 <= stopped_at < 400, "the run must be cut off mid-way for this test to mean anything"
    assert not (killed / "manifest.json").exists()
    assert list((cache / "jaxcollapse" / "jax").iterdir()), "the compilation cache was not written"
    # what a kill in the middle of an atomic write leaves: the tool's temp files, removed on resume;
    # a file of the user's that merely looks alike stays
    stale = [killed / ".metrics.npz.k2j4_x9q.jaxcollapse-tmp",
             killed / "checkpoint" / f".records-{stopped_at + 1:09d}-{stopped_at + 1:09d}.npz.a1b2c3d4.jaxcollapse-tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    (killed / "notes.a1b2c3d4.tmp").write_text("mine")

    assert cli.main(["run", str(study), "--out", str(killed), "--resume", "--no-plots"]) == 0
    resumed = jaxcollapse.load(killed)
    assert resumed.manifest["resumed"] is True
    assert not any(path.exists() for path in stale)
    assert (killed / "notes.a1b2c3d4.tmp").read_text() == "mine"
    assert not (killed / "checkpoint").exists() and not (killed / ".jaxcollapse.lock").exists()

    whole = finished(tmp_path_factory, text.replace("chunk_size = 2", "chunk_size = 400"))
    for name in ARRAY_FILES:
        a, b = io.read_npz(killed / name), io.read_npz(whole.path / name)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")


def test_resume_refuses_a_different_config(tmp_path, capsys):
    study = write(tmp_path, DICE)
    out = tmp_path / "out"
    assert cli.main(["run", str(study), "--out", str(out), "--no-plots"]) == 0
    assert cli.main(["run", str(study), "--out", str(out), "--resume", "--set", "run.n_chains=17"]) == 2
    assert "run.n_chains: 16 != 17" in capsys.readouterr().err
    # the same config resumes a finished run by skipping it
    assert cli.main(["run", str(study), "--out", str(out), "--resume", "--no-plots"]) == 0
    assert "already complete" in capsys.readouterr().err


def test_list_and_info(capsys, environ, tmp_path):
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "dice" in listed and "collapse_or_thrive" in listed and "gaussian_theorem31" in listed
    assert cli.main(["info"]) == 0
    info = capsys.readouterr().out
    assert "jax" in info and "devices" in info and "cpu" in info.lower()
    assert "compiled programs: off (JAXCOLLAPSE_NO_CACHE)" in info  # tests switch it off (conftest)
    assert "schedule     auto (default; JAXCOLLAPSE_SCHEDULE sets it): a GMM runs scan (auto: scanned on a CPU)" in info
    assert "sums         auto (default; JAXCOLLAPSE_SUMS sets it): a GMM runs product (auto: one matrix-vector" in info
    assert "em_backend   auto (default; JAXCOLLAPSE_NATIVE sets it): a GMM runs " in info
    environ(JAXCOLLAPSE_NO_CACHE=None, JAX_COMPILATION_CACHE_DIR=None, XDG_CACHE_HOME=str(tmp_path))
    assert cli.main(["info"]) == 0
    assert f"compiled programs: {tmp_path / 'jaxcollapse' / 'jax'} when running a study" in capsys.readouterr().out


def test_compilation_cache_switches(environ, tmp_path):
    import jax

    from jaxcollapse import compile_cache

    environ(JAXCOLLAPSE_NO_CACHE=None, JAXCOLLAPSE_CACHE_DIR=None, JAX_COMPILATION_CACHE_DIR=None,
            XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert compile_cache.default_dir() == tmp_path / "xdg" / "jaxcollapse" / "jax"
    environ(JAXCOLLAPSE_CACHE_DIR=str(tmp_path / "mine"))
    assert compile_cache.default_dir() == tmp_path / "mine"
    before = jax.config.jax_compilation_cache_dir
    assert compile_cache.enable(disabled=True) == "off (--no-cache)"  # --no-cache: JAX's setting untouched
    environ(JAXCOLLAPSE_NO_CACHE="1")
    assert compile_cache.enable() == "off (JAXCOLLAPSE_NO_CACHE)"
    assert jax.config.jax_compilation_cache_dir == before
    # `run --no-cache` is an option of run (the cache itself is checked by the kill -9 test's subprocess)
    assert cli.make_parser().parse_args(["run", "dice", "--no-cache"]).no_cache is True


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"jaxcollapse {jaxcollapse.__version__} (jax ")


def test_export_command(tmp_path_factory, capsys):
    path = finished(tmp_path_factory, DICE).path
    assert cli.main(["export", str(path), "--to", str(path / "table.csv")]) == 0
    assert capsys.readouterr().out.strip() == str(path / "table.csv")
    header = (path / "table.csv").read_text().splitlines()[0]
    assert header.startswith("chain,generation,") and "support_size" in header
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert cli.main(["export", str(path), "--format", "parquet"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "parquet export needs pyarrow" in err and "pip install pyarrow" in err


def test_plot_and_summary_commands(tmp_path_factory, capsys):
    path = finished(tmp_path_factory, DICE).path
    assert cli.main(["plot", str(path)]) == 0
    written = capsys.readouterr().out.split()
    assert any(w.endswith("support_decay.png") for w in written)
    assert cli.main(["summary", str(path)]) == 0
    assert "collapse (support_size < 2)" in capsys.readouterr().out


def test_console_script_help():
    # the installed entry point (pyproject [project.scripts]) is the same main()
    done = subprocess.run([sys.executable, "-m", "jaxcollapse.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "run" in done.stdout and "list" in done.stdout


def test_cpu_devices_option(capsys):
    """--cpu-devices splits the CPU before JAX starts (a fresh process); refused by name when it cannot."""
    done = subprocess.run([sys.executable, "-m", "jaxcollapse.cli", "info", "--cpu-devices", "2"],
                          capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr
    assert "devices      2: " in done.stdout
    with pytest.raises(SystemExit):
        cli.main(["info", "--cpu-devices", "0"])
    assert "allowed values are an integer >= 1 or 'auto'" in capsys.readouterr().err
    import jax

    assert jax.local_device_count("cpu") == 1  # JAX started in this process, with one CPU device
    assert cli.main(["info", "--cpu-devices", "3"]) == 1
    assert "JAX has already started here with 1 CPU device(s)" in capsys.readouterr().err
