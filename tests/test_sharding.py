"""The chain axis over several devices and processes gives the same chains, bit for bit.

Fake devices (XLA_FLAGS=--xla_force_host_platform_device_count) and jax.distributed live in
subprocesses (tests/_sharding_worker.py), so nothing leaks into the other tests.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse import sharding

import _sharding_worker as worker

WORKER = Path(__file__).with_name("_sharding_worker.py")
TIMEOUT = 240  # seconds, per subprocess


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def _run_worker(*args):
    done = subprocess.run([sys.executable, str(WORKER), *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env())
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_same(arrays, prefix_a, prefix_b):
    names = sorted(k[len(prefix_a):] for k in arrays if k.startswith(prefix_a))
    assert names and names == sorted(k[len(prefix_b):] for k in arrays if k.startswith(prefix_b))
    for name in names:
        np.testing.assert_array_equal(arrays[prefix_a + name], arrays[prefix_b + name], err_msg=name)


@pytest.fixture(scope="module")
def mesh_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mesh") / "mesh.npz"
    report = _run_worker("mesh", out)
    with np.load(out) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return report, arrays


# ---------------------------------------------------------------- 8 fake devices, one process
@pytest.mark.parametrize("kind", worker.KINDS)
def test_sharded_equals_unsharded_bit_for_bit(mesh_run, kind):
    report, arrays = mesh_run
    assert report["devices"] == 8
    assert arrays[f"{kind}/all/params.cov"].shape == (worker.N_CHAINS, 5, 2, 2)  # padding trimmed
    _assert_same(arrays, f"{kind}/one/", f"{kind}/all/")


@pytest.mark.parametrize("kind", worker.KINDS)
def test_carry_stays_sharded_over_all_devices(mesh_run, kind):
    checks = mesh_run[0]["checks"][kind]
    assert checks["n_padded"] == 16
    assert checks["carry_devices"] == [8]
    assert checks["carry_specs"] == ["P('chains',)"]


def test_no_collective_inside_a_chunk(mesh_run):
    # accumulate_subsample's top_k over the pool is what sharding propagation alone would all-gather
    assert mesh_run[0]["checks"]["accumulate_subsample"]["collectives"] == []


def test_checkpoint_resumes_on_another_device_count(mesh_run):
    report, arrays = mesh_run
    assert report["checks"]["keep_real"]["resumed_devices"] == 3
    _assert_same(arrays, "keep_real/one/", "keep_real/resumed/")


# ---------------------------------------------------------------- two processes joined by jax.distributed
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    port, n_processes = _free_port(), 2
    outs = [tmp_path / f"process{i}.npz" for i in range(n_processes)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), *map(str, ("process", outs[i], port, i, n_processes))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for i in range(n_processes)]
    try:
        finished = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (stdout, stderr) in zip(procs, finished):
        assert p.returncode == 0, stderr[-4000:]
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in finished]
    assert [r["process"] for r in reports] == [0, 1]
    assert all(r["processes"] == 2 and r["devices"] == 4 and r["local_devices"] == 2 for r in reports)

    family, source, kwargs = worker.study("keep_real")
    single = worker.flat(jc.simulate(jax.random.key(7), family, source, devices=1, **kwargs), "keep_real")
    for out in outs:
        with np.load(out) as npz:
            assert sorted(npz.files) == sorted(single)
            for name in single:
                np.testing.assert_array_equal(npz[name], single[name], err_msg=f"{out.name}: {name}")


# ---------------------------------------------------------------- layout, in this process
def test_one_device_layout_is_plain():
    layout = sharding.ChainLayout.build(None if jax.device_count() == 1 else 1, 5)
    assert layout.mesh is None and layout.n_padded == 5 and layout.n_devices == 1
    tree = {"x": np.arange(5.0), "k": jax.random.split(jax.random.key(0), 5)}
    back = layout.gather(layout.place(tree))
    np.testing.assert_array_equal(back["x"], tree["x"])
    np.testing.assert_array_equal(jax.random.key_data(back["k"]), jax.random.key_data(tree["k"]))


@pytest.mark.parametrize("devices,match", [
    (0, "between 1 and"),
    (jax.device_count() + 1, "between 1 and"),
    ([], "sequence of jax.Device"),
    (["cpu:0"], "sequence of jax.Device"),
    ([jax.devices()[0]] * 2, "must not repeat"),
    (jax.sharding.Mesh(np.array(jax.devices()[:1]), ("x",)), "single axis 'chains'"),
])
def test_bad_devices_are_refused(devices, match):
    fam = jc.Gaussian(dim=1)
    with pytest.raises(ValueError, match=f"devices.*{match}|{match}"):
        jc.simulate(jax.random.key(0), fam, fam.make_params(mean=[0.0], cov=[[1.0]]), n_chains=2,
                    n_generations=1, n_samples=4, devices=devices)


# ---------------------------------------------------------------- the CLI across two processes (slow: ~1 min)
@pytest.mark.slow
def test_cli_distributed_equals_one_process(tmp_path):
    from jaxcollapse import config, study

    settings = ["run.n_chains=13", "run.n_generations=6", "run.snapshot_at=[0,3]"]
    study.run_study(config.find_study("dice"), tmp_path / "one", overrides=settings, chunk_size=2,
                    show_progress=False, plots=False)
    port = _free_port()
    command = [sys.executable, "-m", "jaxcollapse.cli", "run", "dice", "--out", str(tmp_path / "two"),
               "--chunk-size", "2", "--no-plots", "--no-progress", "--distributed"]
    command += [arg for setting in settings for arg in ("--set", setting)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(_env(), XLA_FLAGS="--xla_force_host_platform_device_count=2",
                                       JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                       JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    try:
        finished = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, stderr) in zip(procs, finished):
        assert p.returncode == 0, stderr[-4000:]
    one, two = jc.load(tmp_path / "one"), jc.load(tmp_path / "two")
    assert two.manifest["devices"] and len(two.manifest["devices"]) == 4
    for name in one.metrics:
        np.testing.assert_array_equal(two.metrics[name], one.metrics[name], err_msg=name)
    np.testing.assert_array_equal(two.snapshots, one.snapshots)
