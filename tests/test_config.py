"""Study configs: every error names the key, its value and what is allowed; sweeps; overrides."""
import pytest
from _studies import DICE, REGIME_SWEEP, write

from jaxcollapse import study
from jaxcollapse.study import config
from jaxcollapse.study.config import ConfigError


def _raw(text, tmp_path, overrides=()):
    return config.load_study(write(tmp_path, text), overrides)


def test_valid_config_fills_defaults(tmp_path):
    raw, runs = _raw(DICE, tmp_path)
    assert [name for name, _ in runs] == [""]
    checked = runs[0][1]
    assert checked["run"]["n_chains"] == 16 and checked["run"]["save_params"] is True
    assert checked["regime"] == {"kind": "replace"}
    assert checked["name"] == "tiny_dice"


@pytest.mark.parametrize("override, words", [
    ("run.n_chain=5", ["run.n_chain = 5", "unknown key", "did you mean 'n_chains'", "n_generations"]),
    ("family.n_face=6", ["family.n_face = 6", "unknown key", "n_states"]),
    ("nonsense.key=1", ["nonsense.key", "unknown section"]),
])
def test_unknown_key_is_named(tmp_path, override, words):
    with pytest.raises(ConfigError) as err:
        _raw(DICE, tmp_path, [override])
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("override, words", [
    ('run.n_chains="100"', ['run.n_chains = "100"', "wrong type: a string", "an integer >= 1"]),
    ("run.n_samples=2.5", ["run.n_samples = 2.5", "wrong type: a float", "an integer >= 1"]),
    ("regime.kind=3", ["regime.kind = 3", "wrong type", "replace", "keep_real"]),
    ("run.metrics=entropy", ['run.metrics = "entropy"', "wrong type", "list"]),
    ("family.n_states=true", ["family.n_states = true", "wrong type: a boolean", "an integer"]),
])
def test_wrong_type_is_named(tmp_path, override, words):
    with pytest.raises(ConfigError) as err:
        _raw(DICE, tmp_path, [override])
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("override, words", [
    ("run.n_chains=0", ["run.n_chains = 0", "out of range", "an integer >= 1"]),
    ("run.n_generations=-3", ["run.n_generations = -3", "out of range"]),
    ("run.snapshot_at=[0, 99]", ["run.snapshot_at = [0, 99]", "out of range", "[0, 6]"]),
    ("regime.kind=keep_real", ["regime.fraction is missing"]),
])
def test_out_of_range_is_named(tmp_path, override, words):
    with pytest.raises(ConfigError) as err:
        _raw(DICE, tmp_path, [override])
    for word in words:
        assert word in str(err.value)


def test_fraction_out_of_range(tmp_path):
    with pytest.raises(ConfigError, match=r"regime.fraction = 1.5 \(out of range\); allowed: a number in \[0.0, 1.0\]"):
        _raw(DICE, tmp_path, ["regime.kind=keep_real", "regime.fraction=1.5"])


def test_family_range_errors_are_prefixed(tmp_path):
    # the family's own check (n_states >= 2) surfaces with the config key in front
    raw, runs = _raw(DICE, tmp_path, ["family.n_states=1"])
    with pytest.raises(ConfigError, match=r"^family\.n_states must be an integer >= 2, got 1"):
        study.build(*runs[0])


def test_unknown_metric_is_named(tmp_path):
    raw, runs = _raw(DICE, tmp_path, ['run.metrics=["entropy", "nope"]'])
    with pytest.raises(ConfigError, match=r"run\.metrics.*nope"):
        study.build(*runs[0])


def test_unknown_family(tmp_path):
    with pytest.raises(ConfigError, match=r'family.name = "dirichlet" \(unknown value\); allowed: one of "categorical"'):
        _raw(DICE, tmp_path, ["family.name=dirichlet"])


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.read(write(tmp_path, "[run\nn_chains = 1"))
    with pytest.raises(ConfigError, match="does not exist"):
        config.read(tmp_path / "absent.toml")


def test_configs_are_data_not_code(tmp_path):
    # a string that looks like Python stays a string: nothing is evaluated
    raw, runs = _raw(DICE, tmp_path, ['description="__import__(\'os\').system(\'false\')"'])
    assert runs[0][1]["description"].startswith("__import__")
    with pytest.raises(ConfigError, match="wrong type"):
        _raw(DICE, tmp_path, ['run.n_chains="__import__(\'os\')"'])


def test_overrides_parse_toml_values_and_bare_words(tmp_path):
    assert config.parse_override("run.n_chains=100") == ("run.n_chains", 100)
    assert config.parse_override("regime.kind=accumulate") == ("regime.kind", "accumulate")
    assert config.parse_override("run.snapshot_at=[0, 2]") == ("run.snapshot_at", [0, 2])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        config.parse_override("run.n_chains")


def test_sweep_expands_to_named_runs(tmp_path):
    raw, runs = _raw(REGIME_SWEEP, tmp_path)
    names = [name for name, _ in runs]
    assert names == ["replace", "keep_real-0.5"]
    assert runs[1][1]["regime"] == {"kind": "keep_real", "fraction": 0.5}
    text = REGIME_SWEEP + '"run.n_samples" = [6, 10]\n'
    raw, runs = _raw(text, tmp_path)
    assert len(runs) == 4 and runs[-1][1]["run"]["n_samples"] == 10


def test_sweep_errors_name_the_run(tmp_path):
    with pytest.raises(ConfigError, match=r"in sweep run .*regime.fraction = 2"):
        _raw(REGIME_SWEEP.replace("fraction = 0.5", "fraction = 2"), tmp_path)
    with pytest.raises(ConfigError, match="swept"):
        _raw(REGIME_SWEEP, tmp_path, ["regime.kind=accumulate"])


BUILTIN_STUDIES = sorted(config.builtin_dir().glob("*.toml"))


def test_the_builtin_studies_include_the_default():
    assert any(p.stem == "dice" for p in BUILTIN_STUDIES)


@pytest.mark.parametrize("path", BUILTIN_STUDIES, ids=lambda p: p.stem)   # one per study: xdist spreads them
def test_builtin_study_is_valid(path):
    raw, runs = config.load_study(path)
    assert raw.get("description"), f"{path.name} needs a description for `jaxcollapse list`"
    for name, cfg in runs:
        study.build(name, cfg)  # traces shapes only; nothing runs
