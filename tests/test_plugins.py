"""Plugins: a family, a stage, a score, a metric and a collapse rule written in the user's own files, named in a
TOML study; their hashes in the config digest and the manifest; bad plugin paths refused in one line."""
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxcollapse.cli import main
from jaxcollapse.study import config, plugins
from jaxcollapse.study.build import plugin_record, run_digest
from jaxcollapse.study.config import ConfigError
from jaxcollapse.study.run import run_study

COIN = '''
"""A coin: points are 0 / 1, the fit is the weighted share of ones."""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcollapse.families import register
from jaxcollapse.families.base import FamilyBase, closed_form_info, family


class CoinParams(NamedTuple):
    p: jax.Array


@register("tmp_coin")
@family(static=())
class Coin(FamilyBase):
    point_shape = ()
    point_dtype = jnp.int32

    def make_params(self, p=0.5):
        return CoinParams(jnp.asarray(p, jnp.result_type(float)))

    def check_params(self, params):
        return self.make_params(params.p)

    def check_data(self, name, data):
        return jnp.asarray(data, jnp.int32)

    def check_settings(self, n_samples):
        del n_samples

    def sample(self, key, params, n):
        return jax.random.bernoulli(key, params.p, (n,)).astype(jnp.int32)

    def log_prob(self, params, x):
        return jnp.where(x == 1, jnp.log(params.p), jnp.log1p(-params.p))

    def fit(self, key, x, w, init=None):
        params = CoinParams(jnp.sum(w * x) / jnp.sum(w))
        return params, closed_form_info(params)

    def metrics(self, key, params, source):
        return {"ones": params.p}
'''

THIN = '''
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

import jaxcollapse as jc


@jc.stage(name="tmp_thin")
class Thin:
    """Drop each synthetic point with probability `share`."""

    share: Any = dataclasses.field(metadata={"toml": "share"})

    def init(self, real, ctx):
        return ()

    def update(self, key, state, batch, ctx):
        dropped = jax.random.uniform(key, batch.w.shape) < self.share
        return state, batch._replace(w=jnp.where(dropped, 0.0, batch.w))
'''

SCORE = '''
import numpy as np

from jaxcollapse.stages import register_score
from jaxcollapse.study import register_collapse_rule, register_metric


@register_score("tmp_ones")
def ones_first(ctx, x):
    return x.astype(float)


@register_metric("tmp_odds", needs=("p",))
def odds(family, config, source, params):
    p = np.asarray(params["p"], float)
    return p / np.maximum(1.0 - p, 1e-9)


@register_collapse_rule("tmp_all_ones")
def all_ones(family, config):
    return {"metric": "ones", "above": 0.999}
'''

STUDY = '''
name = "coins"
plugins = ["plugins/coin.py", "plugins/thin.py", "score.py"]

[family]
name = "tmp_coin"

[source]
p = 0.4

[regime]
kind = "pipeline"
stages = [{ kind = "filter_top", score = "tmp_ones", keep = 0.8 }, { kind = "tmp_thin", share = [0.0, 0.25] }]

[run]
n_chains = 8
n_generations = 4
n_samples = 16
chunk_size = 2
derived_metrics = ["tmp_odds"]

[collapse]
rule = "tmp_all_ones"
'''


def write_study(folder: Path) -> Path:
    (folder / "plugins").mkdir(parents=True, exist_ok=True)
    (folder / "plugins" / "coin.py").write_text(COIN)
    (folder / "plugins" / "thin.py").write_text(THIN)
    (folder / "score.py").write_text(SCORE)
    (folder / "coins.toml").write_text(STUDY)
    return folder / "coins.toml"


def test_a_study_runs_a_family_a_stage_and_a_score_from_its_own_files(tmp_path):
    study = write_study(tmp_path / "study")
    outcome = run_study(study, tmp_path / "out", show_progress=False)
    plan = outcome.plans[0]
    hashes = plan.config["plugins"]
    assert list(hashes) == ["plugins/coin.py", "plugins/thin.py", "score.py"]
    assert plan.plugins == hashes
    manifest = (outcome.path / "manifest.json").read_text()
    assert all(sha in manifest for sha in hashes.values())
    assert json.loads((outcome.path / "config.json").read_text())["plugins"] == hashes
    results = outcome.results[plan.label]
    ones = np.asarray(results.metrics["ones"])
    assert ones.shape == (8, 5)
    # the score keeps ones first: the share of ones grows; the thinning stage's share is a grid axis
    assert np.all(ones[:, -1] >= ones[:, 0])
    np.testing.assert_array_equal(plan.program.regime.stages[1].share, np.repeat([0.0, 0.25], 4))
    np.testing.assert_allclose(results.metrics["tmp_odds"], ones / np.maximum(1 - ones, 1e-9), rtol=1e-6)

    # an edited plugin is another config: the digest changes and --resume refuses, naming the plugin
    before = plan.digest
    (study.parent / "score.py").write_text(SCORE + "\n# edited\n")
    _, runs = config.load_study(study)
    assert runs[0][1]["plugins"]["score.py"] != hashes["score.py"]
    with pytest.raises(ConfigError, match=r"cannot resume .*plugins"):
        run_study(study, tmp_path / "out", resume=True, show_progress=False)
    assert run_digest(runs[0][1]) != before


def test_importing_a_plugin_twice_is_a_no_op_and_two_folders_do_not_clash(tmp_path):
    first, second = tmp_path / "a" / "score.py", tmp_path / "b" / "score.py"
    for path in (first, second):
        path.parent.mkdir()
    first.write_text("COUNT = globals().get('COUNT', 0) + 1\n")
    second.write_text("VALUE = 2\n")
    assert plugins.import_file(first) == plugins.import_file(first)
    module = sys.modules[plugins.module_name(first)]
    assert module.COUNT == 1 and plugins.module_name(first) != plugins.module_name(second)
    plugins.import_file(second)
    assert sys.modules[plugins.module_name(second)].VALUE == 2


@pytest.mark.parametrize("entry, problem", [("missing.py", "no such file"), ("notes.txt", "not a .py file")])
def test_a_bad_plugin_path_is_one_config_error_line(tmp_path, entry, problem, capsys):
    (tmp_path / "notes.txt").write_text("not python")
    study = tmp_path / "bad.toml"
    study.write_text(f'plugins = ["{entry}"]\n[family]\nname = "categorical"\nn_states = 3\n')
    with pytest.raises(ConfigError, match=rf'^plugins = "{entry}" \({problem}') as err:
        config.load_study(study)
    assert "\n" not in str(err.value)
    assert main(["run", str(study), "--out", str(tmp_path / "out"), "--no-cache"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f'config error: plugins = "{entry}" ({problem}' in lines[0]


def test_a_plugin_name_cannot_take_a_built_in_name(tmp_path):
    path = tmp_path / "clash.py"
    path.write_text(textwrap.dedent('''
        from jaxcollapse.stages import register_score

        @register_score("source")
        def mine(ctx, x):
            return x
    '''))
    with pytest.raises(ValueError, match="a score named 'source' is already registered"):
        plugins.import_file(path)


def test_installed_plugins_load_once_through_the_entry_point_group(monkeypatch):
    loads = []

    class EntryPoint:
        name, value, dist = "fake", "fake_package.plugin", None

        def load(self):
            loads.append(1)

    def entry_points(group):
        return [EntryPoint()] if group == plugins.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(plugins, "_installed", None)
    assert plugins.load_installed() == {"fake": "fake_package.plugin"}
    assert plugins.load_installed() == {"fake": "fake_package.plugin"} and loads == [1]
    assert plugin_record({"plugins": {"a.py": "0" * 64}}) == {"a.py": "0" * 64, "entry point fake": "fake_package.plugin"}


def test_the_poisson_example_study_runs_at_a_tiny_size(tmp_path):
    study = Path(__file__).resolve().parents[1] / "experiments" / "poisson.toml"
    outcome = run_study(study, tmp_path / "out", show_progress=False,
                        overrides=["run.n_chains=8", "run.n_generations=4", "run.n_samples=20"])
    assert set(outcome.plans[0].config["plugins"]) == {"poisson.py"}
    assert list((outcome.path / "figures").glob("*.png"))
