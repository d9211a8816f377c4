"""Execution choices are settings: validated in one place, resolved with a reason, logged, recorded, and
resumed only onto the same path (jaxcollapse/settings.py)."""
import json
import logging

import jax
import numpy as np
import pytest
from _studies import DICE, GAUSSIAN_SWEEP, TINY_GMM, write

import jaxcollapse as jc
from jaxcollapse import cli, settings
from jaxcollapse.engine import ChainProgram
from jaxcollapse.engine import program as program_lib
from jaxcollapse.native import build
from jaxcollapse.native import em as native_em
from jaxcollapse.store import runs as io
from jaxcollapse.study import plan_study, run_digest, run_study
from jaxcollapse.study.config import ConfigError

GAUSSIAN = GAUSSIAN_SWEEP.split("[sweep]")[0].replace("snapshot_at = [4]", "snapshot_at = []")


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("variable,value,allowed", [
    ("JAXCOLLAPSE_NATIVE", "fast", "'auto', 'native', 'xla' (or 'on' for 'native', 'off' for 'xla')"),
    ("JAXCOLLAPSE_SCHEDULE", "later", "'auto', 'scan', 'lanes', 'lanes-accelerator'"),
    ("JAXCOLLAPSE_SUMS", "matmul", "'auto', 'product', 'reduce'"),
    ("JAXCOLLAPSE_NO_CACHE", "maybe", "'1', 'true', 'yes', 'on'"),
    ("JAX_NUM_PROCESSES", "two", "an integer"),
])
def test_a_bad_environment_value_names_the_variable_and_the_allowed_values(variable, value, allowed):
    with pytest.raises(ValueError) as err:
        settings.read_environment({variable: value})
    message = str(err.value)
    assert message.startswith(f"{variable} must be ") and allowed in message and repr(value) in message


def test_the_environment_gives_the_defaults_and_the_old_values_still_work(environ):
    environment = settings.read_environment({"JAXCOLLAPSE_NATIVE": "off", "JAXCOLLAPSE_SCHEDULE": "lanes",
                                             "JAXCOLLAPSE_SUMS": "reduce", "JAXCOLLAPSE_NO_CACHE": "0"})
    assert environment.execution == settings.ExecutionSettings("xla", "lanes", "reduce")
    assert not environment.no_cache
    assert settings.read_environment({"JAXCOLLAPSE_NATIVE": "on"}).execution.em_backend == "native"
    environ(JAXCOLLAPSE_SUMS="reduce")
    assert settings.current().sums == "reduce" and settings.source("sums") == "JAXCOLLAPSE_SUMS"


def test_bad_settings_from_python_and_from_a_study(tmp_path, execution):
    with pytest.raises(ValueError, match=r"^em_backend must be one of 'auto', 'native', 'xla'.*got 'gpu'"):
        execution(em_backend="gpu")
    with pytest.raises(ValueError, match=r"^schedule must be one of 'auto', 'scan', 'lanes'.*got 'fast'"):
        settings.ExecutionSettings(schedule="fast")
    with pytest.raises(ValueError, match=r"^sums must be one of 'auto', 'product', 'reduce', got 'dot'"):
        with settings.using(sums="dot"):
            pass
    with pytest.raises(ConfigError, match=r'run.em_backend = "gpu" \(unknown value\); allowed: one of "auto", "native", '
                                          r'"xla", "on", "off"'):
        plan_study(write(tmp_path, DICE), ["run.em_backend='gpu'"])
    with pytest.raises(ConfigError, match=r'run.x64 = "yes" \(wrong type: a string\); allowed: true or false'):
        plan_study(write(tmp_path, DICE), ["run.x64='yes'"])


def test_configure_and_using(execution):
    default = settings.current()
    with settings.using(em_backend="off") as inside:
        assert inside.em_backend == "xla" and settings.current() == inside
        assert settings.source("em_backend") == "set from Python or a study"
    assert settings.current() == default
    execution(sums="reduce")
    assert settings.current().sums == "reduce"
    with settings.using(sums="product"):
        assert settings.current().sums == "product"
    assert settings.current().sums == "reduce"


# ---------------------------------------------------------------- resolution
def test_each_choice_resolves_with_a_reason(monkeypatch, execution):
    assert settings.resolve_sums("auto", "cpu") == settings.Choice("product", "auto: one matrix-vector product on a CPU")
    assert settings.resolve_sums("auto", "gpu").value == "reduce"
    assert settings.resolve_sums("reduce", "cpu") == settings.Choice("reduce", "requested")
    assert settings.resolve_schedule(True, "auto", "cpu").value == "scan"
    assert settings.resolve_schedule(True, "auto", "gpu").value == "lanes-accelerator"
    assert settings.resolve_schedule(False, "lanes", "gpu") == settings.Choice("scan", "the family's fit is not in pieces")
    assert str(native_em.resolve(2, 2, np.float32, "xla")) == "xla (requested)"
    assert "d = 5, K = 2" in native_em.resolve(2, 5, np.float32, "auto").reason
    # a failed build: "auto" falls back to XLA and says why; "native" refuses
    monkeypatch.setattr(build, "library", lambda: (None, "no C++ compiler found (set CXX)"))
    assert str(native_em.resolve(2, 2, np.float32, "auto")) == "xla (native build failed: no C++ compiler found (set CXX))"
    execution(em_backend="native")
    with pytest.raises(ValueError, match="em_backend = 'native' .* but the native build failed: no C\\+\\+ compiler"):
        native_em.resolve(2, 2, np.float32)


def test_a_run_logs_what_it_resolved_once(caplog, monkeypatch):
    monkeypatch.setattr(settings, "_ANNOUNCED", set())  # as in a fresh process
    fam = jc.GMM(2, dim=2)
    src = fam.make_params([1.0], [[0.0, 0.0]], [np.eye(2)])
    program = ChainProgram(fam, src, n_chains=2, n_generations=1, n_samples=20)
    expected = program.execution
    assert expected.em_backend == native_em.resolve(2, 2, np.float32)
    with caplog.at_level(logging.INFO, logger="jaxcollapse"):
        program.announce()
        program.announce()
    lines = [r.getMessage() for r in caplog.records if r.name == "jaxcollapse"]
    assert lines == [f"execution: em_backend={expected.em_backend}, schedule={expected.schedule}, "
                     f"sums={expected.sums}, x64=false, jax {jax.__version__}"]
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("jaxcollapse").handlers)  # quiet


# ---------------------------------------------------------------- recorded, and resumed onto the same path
def _interrupted(tmp_path, text, overrides=()):
    """A run stopped after its first chunk: its folder, with the checkpoint."""
    class Stop(Exception):
        pass

    def stop(generation):
        raise Stop

    study, out = write(tmp_path, text), tmp_path / "out"
    with pytest.raises(Stop):
        run_study(study, out, overrides=overrides, plots=False, show_progress=False, on_checkpoint=stop)
    return study, out


def _state(out):
    return json.loads((out / "checkpoint" / "state.json").read_text())


def test_the_resolved_path_is_in_the_manifest_and_the_checkpoint_and_resume_keeps_to_it(tmp_path, capsys):
    study, out = _interrupted(tmp_path, GAUSSIAN)
    saved = _state(out)["execution"]
    assert saved["schedule"] == "scan" and saved["em_backend"] is None and saved["sums"] is None
    assert saved["x64"] is False and saved["jax"] == jax.__version__ and saved["plugins"] == {}
    assert saved["reasons"] == {"schedule": "the family's fit is not in pieces"}
    # the checkpoint says another jax wrote it: refused in one line naming both, and the flag allows it
    state = _state(out)
    state["execution"]["jax"] = "0.4.1"
    (out / "checkpoint" / "state.json").write_text(json.dumps(state))
    command = ["run", str(study), "--out", str(out), "--resume", "--no-plots", "--no-progress"]
    assert cli.main(command) == 1
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("jaxcollapse:")]  # one line
    assert err.startswith(f"jaxcollapse: error: cannot resume {out}: its checkpoint was written by jax 0.4.1")
    assert (f"checkpoint was written by jax 0.4.1, x64=false; this run resolves jax {jax.__version__}, x64=false; "
            "pass --allow-other-path to resume anyway") in err
    assert cli.main(command + ["--allow-other-path"]) == 0
    manifest = io.read_json(out / "manifest.json")
    assert manifest["resumed"] and manifest["execution"] == saved
    assert manifest["earlier_execution"][0]["jax"] == "0.4.1"


def test_a_checkpoint_of_jaxcollapse_0_1_0_resumes_as_unknown(tmp_path):
    """0.1.0 recorded no path: such a checkpoint resumes, and the manifest says the earlier path is unknown."""
    study, out = _interrupted(tmp_path, GAUSSIAN)
    state = _state(out)
    del state["execution"]
    (out / "checkpoint" / "state.json").write_text(json.dumps(state))
    run_study(study, out, resume=True, plots=False, show_progress=False)
    manifest = io.read_json(out / "manifest.json")
    assert manifest["earlier_execution"] == ["unknown"] and manifest["execution"]["schedule"] == "scan"
    old = dict(manifest)
    del old["execution"], old["earlier_execution"]  # a 0.1.0 results folder: it still loads
    (out / "manifest.json").write_text(json.dumps(old))
    assert jc.load(out).metrics["log_var"].shape == (8, 5)


def test_a_studys_execution_keys_choose_the_path_and_a_different_one_refuses_to_resume(tmp_path):
    _, (plan,) = plan_study(write(tmp_path, TINY_GMM), ["run.em_backend='xla'", "run.sums='reduce'"])
    execution = plan.program.execution
    assert str(execution.em_backend) == "xla (requested)" and str(execution.sums) == "reduce (requested)"
    assert plan.program.settings == settings.ExecutionSettings("xla", "auto", "reduce")
    assert settings.current() == settings.environment().execution  # the study's keys stay with its programs
    # the execution keys are out of the config digest: what they resolve to is compared instead
    assert plan.digest == run_digest({**plan.config, "run": {k: v for k, v in plan.config["run"].items()
                                                             if k not in ("em_backend", "sums")}})
    saved, now = program_lib.resolve_execution(plan.family).record(), execution.record()  # the default's, this one's
    line = settings.different_path(saved, now)
    assert line.startswith(f"written by em_backend={saved['em_backend']}, sums=product")
    assert "; this run resolves em_backend=xla, sums=reduce, x64=false, jax" in line
    assert settings.different_path(None, now) is None and settings.different_path(now, now) is None


def test_a_study_with_x64_records_float64(tmp_path):
    text = GAUSSIAN.replace("chunk_size = 2", "chunk_size = 2\nx64 = true")
    outcome = run_study(write(tmp_path, text), tmp_path / "out", plots=False, show_progress=False)
    assert not jax.config.jax_enable_x64  # switched back after the study
    (results,) = outcome.results.values()
    assert results.manifest["x64"] is True and results.manifest["execution"]["x64"] is True
    assert results.params["mean"].dtype == np.float64 and results.metrics["log_var"].dtype == np.float64
    with pytest.raises(ConfigError, match="sweep.run.x64"):
        plan_study(write(tmp_path, GAUSSIAN + '\n[sweep]\n"run.x64" = [true, false]\n', "sweep.toml"))


def test_the_schedule_is_in_the_programs_cache_key(monkeypatch, execution):
    """A program traced under one schedule is not reused under another (a family without lanes included):
    generation 0's program calls start_one only while it is traced."""
    traced = []
    start_one = program_lib.start_one
    monkeypatch.setattr(program_lib, "start_one", lambda *args: traced.append(1) or start_one(*args))
    fam = jc.Gaussian(dim=1, ddof=0)
    src = fam.make_params(mean=[0.0], cov=[[4.0]])

    def run():  # GAUSSIAN's shapes: its study's programs, compiled above, may be reused
        return jc.simulate(jax.random.key(0), fam, src, n_chains=8, n_generations=4, n_samples=6, chunk_size=2)

    run()
    before = len(traced)
    run()
    assert len(traced) == before             # the same settings: the compiled program is reused
    execution(schedule="lanes")
    run()
    assert len(traced) == before + 1         # traced anew
