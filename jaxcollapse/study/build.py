"""A checked study config turned into Plans: family, source, regime and ChainProgram (nothing compiled)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from jaxcollapse import datasets, settings
from jaxcollapse.engine import ChainProgram
from jaxcollapse.stages import STAGES, pipeline, toml_keys
from jaxcollapse.study import config as config_lib
from jaxcollapse.study import footprint, named, plugins
from jaxcollapse.study.analysis import derived_names
from jaxcollapse.study.config import ConfigError
from jaxcollapse.study.knowledge import knowledge_for, recorded
from jaxcollapse.types import Source


@dataclasses.dataclass
class Plan:
    """One run, built and checked (nothing compiled yet)."""

    name: str                 # "" for a study without a sweep
    config: dict              # the checked config
    family: Any
    source: Any               # params or a data array
    program: Any              # ChainProgram
    digest: str
    plugins: dict = dataclasses.field(default_factory=dict)   # the plugin files the run executes: {path: sha256}

    @property
    def label(self) -> str:
        return self.name or self.config.get("name", "")


def _source(config: dict, family):
    """The run's source from its checked [source] table: a data file, a built-in dataset, or the
    family's own params (its study knowledge's source_from_table)."""
    table = dict(config["source"])
    if "data" in table:
        loaded = np.load(table["data"], allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a .npy file: the array itself (not a context manager)
            return loaded
        with loaded as data:
            keys = data.files
            key = table.get("key") or (keys[0] if len(keys) == 1 else None)
            if key not in keys:
                raise ConfigError(f"source.key = {key!r}; allowed: one of {keys} (the arrays in {table['data']})")
            return data[key]
    if "dataset" in table:
        train, heldout = datasets.load_digits(seed=table.get("split_seed", 0))
        return Source(data=train, heldout=heldout)
    try:
        return knowledge_for(family).source_from_table(family, table)
    except TypeError as err:
        raise ConfigError(f"[source] {err}; the keys of [source] are the arguments of the "
                          f"{config['family']['name']} family's make_params") from None
    except ValueError as err:
        raise ConfigError(config_lib._prefixed("source", str(err), table)) from None


def regime_grid(config: dict) -> tuple[list[tuple[str, list]], np.ndarray]:
    """The [regime]'s grid axes [(key, values)] (its lists of numbers, in order) and, per chain, its cell
    index into them [n_chains, n_axes]: the chains are split evenly over every combination, chain c
    in combination c // (n_chains / n_combinations) counted in C order (the last axis fastest)."""
    table = config["regime"]
    stages = table["stages"] if table["kind"] == "pipeline" else [table]
    axes = []
    for i, stage in enumerate(stages):
        where = f"regime.stages[{i}]" if table["kind"] == "pipeline" else "regime"
        keys = toml_keys(stage["kind"])
        axes += [(f"{where}.{k}", v) for k, v in stage.items() if isinstance(v, list) and k in keys and keys[k].grid]
    n_chains = config["run"]["n_chains"]
    shape = tuple(len(v) for _, v in axes)
    cells = int(np.prod(shape, dtype=np.int64))
    if n_chains % cells:
        raise ConfigError(f"run.n_chains = {n_chains}; allowed: a multiple of {cells}, the number of combinations of "
                          f"the [regime] grid ({' x '.join(f'{k} {len(v)}' for k, v in axes)})")
    index = np.arange(n_chains) // (n_chains // cells)
    return axes, np.stack(np.unravel_index(index, shape), axis=1) if axes else np.zeros((n_chains, 0), int)


def _regime(config: dict):
    axes, cells = regime_grid(config)
    per_chain = {key: np.asarray(values, float)[cells[:, a]] for a, (key, values) in enumerate(axes)}
    table = config["regime"]

    def make(stage: dict, where: str):
        kwargs = {k: per_chain.get(f"{where}.{k}", v) for k, v in stage.items() if k != "kind"}
        try:
            return STAGES[stage["kind"]].factory(**kwargs)  # the TOML keys are the factory's argument names
        except ValueError as err:
            raise ConfigError(config_lib._prefixed(where, str(err), stage)) from None

    if table["kind"] != "pipeline":
        return make(table, "regime")
    return pipeline(*(make(s, f"regime.stages[{i}]") for i, s in enumerate(table["stages"])))



def _record(config: dict, family):
    metrics = config["run"].get("metrics")
    return None if metrics is None else tuple(metrics)


def build(name: str, config: dict, devices=None):
    """A Plan for one checked config; every ValueError becomes a ConfigError naming its key."""
    family = config_lib.make_family(config["family"])
    source = _source(config, family)
    run = config["run"]
    regime = _regime(config)
    try:
        with settings.using(settings.from_run_section(run)):  # the program keeps them (ChainProgram.settings)
            program = ChainProgram(family, source, n_chains=run["n_chains"], n_generations=run["n_generations"],
                                   n_samples=run["n_samples"], regime=regime, record=_record(config, family),
                                   snapshot_at=run["snapshot_at"], devices=devices)
    except ValueError as err:
        message = str(err)
        for key in ("record", "n_samples", "snapshot_at", "n_chains", "n_generations"):
            if message.startswith(key):
                message = "run.metrics" + message[len("record"):] if key == "record" else f"run.{message}"
                break
        else:
            message = f"[{'source' if message.startswith('source') else 'run'}] {message}"
        raise ConfigError(message) from None
    try:
        footprint.check_history(program)
    except ValueError as err:
        raise ConfigError(f"[run] {err}") from None
    for metric in config["run"].get("derived_metrics", ()):
        needs = named.METRICS[metric].needs
        if not recorded(config, needs):
            raise ConfigError(f"run.derived_metrics: {metric!r} needs the parameter histories {', '.join(needs)}; "
                              f"allowed: run.metrics naming them too, or no run.metrics")
    collapse = config["collapse"]
    if "rule" in collapse:
        try:
            collapse = named.collapse_rule(collapse["rule"], family, config)
        except ValueError as err:
            raise ConfigError(f"collapse.rule = {config['collapse']['rule']!r}: {err}") from None
    if collapse and collapse["metric"] not in known_metrics(program, config):
        key = f"collapse.rule = {config['collapse']['rule']!r} gives metric" if "rule" in config["collapse"] \
            else "collapse.metric ="
        raise ConfigError(f"{key} {collapse['metric']!r}; allowed: one of {sorted(known_metrics(program, config))}")
    return Plan(name, config, family, source, program, run_digest(config), plugins=plugin_record(config))


def plugin_record(config: dict) -> dict:
    """The plugins a run executes: its files {path: sha256}, then each installed entry point {"entry point NAME":
    "distribution version"} (jaxcollapse.plugins), for the execution record."""
    installed = {f"entry point {name}": version for name, version in plugins.load_installed().items()}
    return {**config.get("plugins", {}), **installed}


def known_metrics(program, config) -> set:
    names = set(config["run"].get("metrics") or program.metric_names())
    return names | set(derived_names(config))


def run_digest(config: dict) -> str:
    """The config's fingerprint, leaving out the chunk size (it does not change results) and the execution
    keys (the checkpoint's execution record compares what they resolve to: settings.different_path)."""
    left_out = ("chunk_size", *config_lib.EXECUTION_KEYS)
    config = {**config, "run": {k: v for k, v in config["run"].items() if k not in left_out}}
    return config_lib.digest(config)


def default_chunk(n_generations: int, n_chunks: int = 20) -> int:
    """About n_chunks chunks, of a size dividing n_generations where one is close (no extra compile)."""
    target = max(1, math.ceil(n_generations / n_chunks))
    divisor = max(d for d in range(1, target + 1) if n_generations % d == 0)
    return divisor if 2 * divisor >= target else target

def plan_study(study, overrides=(), devices=None) -> tuple[dict, list[Plan]]:
    """Parse, check and build every run of a study file before anything compiles."""
    raw, runs = config_lib.load_study(study, overrides)
    return raw, [build(name, cfg, devices) for name, cfg in runs]
