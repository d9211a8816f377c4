"""A checked study config turned into ChainPrograms and run chunk by chunk, with a checkpoint
after every chunk, a progress bar, and the results directory written at the end.

The CLI is a thin layer over run_study(); tests and notebooks may call it directly.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jaxcollapse import config as config_lib
from jaxcollapse import io
from jaxcollapse.config import ConfigError


# ---------------------------------------------------------------- building
@dataclasses.dataclass
class Plan:
    """One run, built and checked (nothing compiled yet)."""

    name: str                 # "" for a study without a sweep
    config: dict              # the checked config
    family: Any
    source: Any               # params or a data array
    program: Any              # ChainProgram
    digest: str

    @property
    def label(self) -> str:
        return self.name or self.config.get("name", "")


def _source(config: dict, family):
    table = dict(config["source"])
    name = config["family"]["name"]
    if "data" in table:
        with np.load(table["data"], allow_pickle=False) as data:
            if isinstance(data, np.ndarray):
                return data
            keys = data.files
            key = table.get("key") or (keys[0] if len(keys) == 1 else None)
            if key not in keys:
                raise ConfigError(f"source.key = {key!r}; allowed: one of {keys} (the arrays in {table['data']})")
            return data[key]
    if "dataset" in table:
        from jaxcollapse import datasets

        train, _ = datasets.load_digits(seed=table.get("split_seed", 0))
        return train
    if name == "categorical" and "probs" not in table:
        table["probs"] = [1.0 / family.n_states] * family.n_states
    if name == "gaussian":
        std = table.pop("std", None)
        if std is not None and "cov" in table:
            raise ConfigError(f"source.std = {std!r}; allowed: either source.std or source.cov, not both")
        table.setdefault("mean", [0.0] * family.dim)
        if "cov" not in table:
            std = 1.0 if std is None else std
            table["cov"] = (std ** 2 * np.eye(family.dim)).tolist()
    try:
        return family.make_params(**table)
    except TypeError as err:
        raise ConfigError(f"[source] {err}; the keys of [source] are the arguments of the {name} family's "
                          f"make_params") from None
    except ValueError as err:
        raise ConfigError(config_lib._prefixed("source", str(err), table)) from None


def _regime(config: dict):
    from jaxcollapse import regimes

    table = config["regime"]
    make = getattr(regimes, table["kind"])
    return make(table["fraction"]) if "fraction" in table else make()


def _record(config: dict, family):
    metrics = config["run"].get("metrics")
    return None if metrics is None else tuple(metrics)


def build(name: str, config: dict, devices=None):
    """A Plan for one checked config; every ValueError becomes a ConfigError naming its key."""
    from jaxcollapse.chain import ChainProgram

    family = config_lib.make_family(config["family"])
    source = _source(config, family)
    run = config["run"]
    try:
        program = ChainProgram(family, source, n_chains=run["n_chains"], n_generations=run["n_generations"],
                               n_samples=run["n_samples"], regime=_regime(config), record=_record(config, family),
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
    collapse = config["collapse"]
    if collapse and collapse["metric"] not in known_metrics(program, config):
        raise ConfigError(f"collapse.metric = {collapse['metric']!r}; allowed: one of "
                          f"{sorted(known_metrics(program, config))}")
    return Plan(name, config, family, source, program, run_digest(config))


def known_metrics(program, config) -> set:
    names = set(config["run"].get("metrics") or program.metric_names())
    return names | set(derived_names(config))


def run_digest(config: dict) -> str:
    """The config's fingerprint, leaving out what does not change results (chunk size)."""
    config = {**config, "run": {k: v for k, v in config["run"].items() if k != "chunk_size"}}
    return config_lib.digest(config)


def default_chunk(n_generations: int, n_chunks: int = 20) -> int:
    """About n_chunks chunks, of a size dividing n_generations where one is close (no extra compile)."""
    target = max(1, math.ceil(n_generations / n_chunks))
    divisor = max(d for d in range(1, target + 1) if n_generations % d == 0)
    return divisor if 2 * divisor >= target else target


# ---------------------------------------------------------------- derived metrics (host side)
def derived_names(config: dict) -> list[str]:
    recorded = config["run"].get("metrics")
    if config["family"]["name"] == "gmm":
        return ["l2_to_generation0"] if recorded is None or {"weights", "means", "covs"} <= set(recorded) else []
    if config["family"]["name"] != "gaussian":
        return []
    if recorded is not None and not {"mean", "cov"} <= set(recorded):
        return []
    has_source_params = "data" not in config["source"] and "dataset" not in config["source"]
    names = ["std"] if config["family"]["dim"] == 1 else []
    if has_source_params:
        names += ["mean_sq_error", "det_ratio"]
    return names


def derived_metrics(config: dict, family, source, params) -> dict:
    """Metrics computed from parameter histories: Gaussian std (d = 1), ||mean - mean_0||^2, det ratio;
    GMM: L2 distance to generation 0's mixture (the paper's curve)."""
    names = derived_names(config)
    if not names or params is None:
        return {}
    if not isinstance(params, dict):
        params = params._asdict()
    if "l2_to_generation0" in names:
        from jaxcollapse import mixture_metrics

        return {"l2_to_generation0": mixture_metrics.l2_to_generation(params, 0)}
    mean, cov = np.asarray(params["mean"]), np.asarray(params["cov"])
    out = {}
    if "std" in names:
        out["std"] = np.sqrt(cov[..., 0, 0])
    if "mean_sq_error" in names:
        out["mean_sq_error"] = np.sum((mean - np.asarray(source.mean)) ** 2, axis=-1)
    if "det_ratio" in names:
        _, logdet = np.linalg.slogdet(cov.astype(np.float64))
        _, logdet0 = np.linalg.slogdet(np.asarray(source.cov, np.float64))
        out["det_ratio"] = np.exp(logdet - logdet0).astype(cov.dtype)
    return out


def collapse_rule(config: dict) -> dict:
    """The [collapse] table, or a default for the family: support size 1 (dice), std < 0.1 sigma (d = 1)."""
    if config["collapse"]:
        return config["collapse"]
    family = config["family"]["name"]
    if family == "categorical" and (config["run"].get("metrics") is None
                                    or "support_size" in config["run"]["metrics"]):
        return {"metric": "support_size", "below": 2}
    if "std" in derived_names(config):
        sigma = 1.0
        source = config["source"]
        if "cov" in source:
            sigma = math.sqrt(source["cov"][0][0])
        elif "std" in source:
            sigma = source["std"]
        return {"metric": "std", "below": 0.1 * sigma}
    return {}


def collapse_times(values, rule: dict) -> np.ndarray:
    """[chains] first generation at which the metric crosses the threshold; -1 if it never does."""
    values = np.asarray(values)
    crossed = values < rule["below"] if "below" in rule else values > rule["above"]
    crossed = crossed.reshape(crossed.shape[0], crossed.shape[1], -1).all(axis=-1)
    return np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)


def describe_rule(rule: dict) -> str:
    side, sign = ("below", "<") if "below" in rule else ("above", ">")
    return f"{rule['metric']} {sign} {rule[side]:g}"


# ---------------------------------------------------------------- running
def environment() -> dict:
    import jax
    import jaxlib

    import jaxcollapse

    return {
        "jaxcollapse": jaxcollapse.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
    }


def _merge(chunks):
    import jax

    return jax.tree_util.tree_map(lambda *parts: np.concatenate(parts, axis=1), *chunks)


def run_plan(plan: Plan, path: Path, *, resume: bool = False, chunk_size: int | None = None,
             progress: Callable[[int], None] | None = None, on_checkpoint: Callable[[int], None] | None = None):
    """Run one plan into `path` (already prepared); returns the chain.Result and the manifest."""
    import jax

    from jaxcollapse.chain import ChainState

    program, run = plan.program, plan.config["run"]
    n_generations = run["n_generations"]
    chunk = chunk_size or run.get("chunk_size") or default_chunk(n_generations)
    key = jax.random.key(run["seed"])
    began, resumed = time.perf_counter(), False
    writer = jax.process_index() == 0  # several processes (--distributed): all compute, process 0 writes
    if resume and (path / "checkpoint.npz").exists():
        state_like, records_like = jax.eval_shape(program.start, key)
        carry_like = jax.eval_shape(program.layout.gather, state_like.carry)  # checkpoints hold n_chains rows
        generation, carry, records, wall_before = io.read_checkpoint(
            path, carry_like=carry_like, records_like=records_like, config_digest=plan.digest)
        state = program.device_state(ChainState(carry, generation))
        chunks, resumed = [records], True
    else:
        if writer:
            io.write_json(path / "config.json", plan.config)
        state, first = program.start(key)
        chunks, wall_before = [first], 0.0
        carry = program.host_state(state).carry  # gathered from every device (and process), padding trimmed
        if writer:
            io.write_checkpoint(path, generation=0, carry=carry, records=first, config_digest=plan.digest,
                                wall_seconds=time.perf_counter() - began)
    if progress is not None:
        progress(state.generation)
    while state.generation < n_generations:
        state, records = program.advance(state, chunk)
        chunks = [_merge(chunks + [records])]
        carry = program.host_state(state).carry
        if writer:
            io.write_checkpoint(path, generation=state.generation, carry=carry, records=chunks[0],
                                config_digest=plan.digest, wall_seconds=wall_before + time.perf_counter() - began)
        if progress is not None:
            progress(state.generation)
        if on_checkpoint is not None:
            on_checkpoint(state.generation)
    wall = wall_before + time.perf_counter() - began
    result = program.result(state, chunks, wall)
    manifest = {
        "run": plan.label, "study": plan.config.get("name", ""), "config_digest": plan.digest,
        "seed": run["seed"], "n_chains": run["n_chains"], "n_generations": n_generations,
        "n_samples": run["n_samples"], "chunk_size": chunk, "resumed": resumed,
        "wall_seconds": round(wall, 3),
        "chain_generations_per_second": round(run["n_chains"] * n_generations / max(wall, 1e-9), 1),
        "failed_chains": int(np.sum(result.failed)),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **environment(),
    }
    result = _params_apart(result, program)
    extra = derived_metrics(plan.config, plan.family, plan.source, result.params)
    if writer:
        io.save_run(path, result, plan.config, manifest, extra)
    _sync(f"saved {path}")
    return result, manifest


def _sync(name: str) -> None:
    """Wait for every process (after process 0 wrote what the others read next); nothing on one process."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _params_apart(result, program):
    """With record=(names...), parameters named there come back among the metrics: move them to params."""
    if result.params is not None:
        return result
    metric_names = set(program.metric_names())
    params = {k: v for k, v in result.metrics.items() if k not in metric_names}
    if not params:
        return result
    metrics = {k: v for k, v in result.metrics.items() if k in metric_names}
    return dataclasses.replace(result, params=params, metrics=metrics)


@dataclasses.dataclass
class StudyOutcome:
    path: Path
    plans: list
    results: dict            # run label -> io.Results
    skipped: list            # runs already complete (resume)


def plan_study(study, overrides=(), devices=None) -> tuple[dict, list[Plan]]:
    """Parse, check and build every run of a study file before anything compiles."""
    raw, runs = config_lib.load_study(study, overrides)
    return raw, [build(name, cfg, devices) for name, cfg in runs]


def run_study(study, out=None, *, overrides=(), resume: bool = False, force: bool = False,
              chunk_size: int | None = None, show_progress: bool | None = None, plots: bool = True,
              log: Callable[[str], None] | None = None, on_checkpoint=None, devices=None) -> StudyOutcome:
    """Run a study file into `out` (default results/<name>): one run, or one subdirectory per sweep run.

    devices: where the chains run (see simulate); after jax.distributed.initialize() every process
    runs this with the same arguments, all compute and process 0 writes.
    """
    import jax

    from jaxcollapse.progress import Progress

    log = log or (lambda message: None)
    writer = jax.process_index() == 0
    study = Path(study)
    raw, plans = plan_study(study, overrides, devices)
    out = Path(out) if out is not None else Path("results") / raw["name"]
    if chunk_size is not None:
        chunk_size = config_lib._int("--chunk-size", chunk_size, 1)
    if resume and out.exists():
        _check_same_study(out, plans)
    sweep = config_lib.sweep_settings(raw)
    if writer:
        io.prepare(out, force=force, resume=resume)
        if sweep:
            io.write_json(out / "study.json", {
                "name": raw["name"], "description": raw.get("description", ""), "sweep": list(sweep),
                "runs": [{"name": p.name, "settings": _settings_of(p.config, sweep)} for p in plans]})
        shutil.copyfile(study, out / "study.toml") if not (out / "study.toml").exists() else None
        for plan in plans:
            (out / plan.name if plan.name else out).mkdir(exist_ok=True)
    _sync(f"prepared {out}")
    results, skipped = {}, []
    for i, plan in enumerate(plans):
        path = out / plan.name if plan.name else out
        if resume and io.is_complete(path):
            skipped.append(plan.label)
            results[plan.label] = io.Results(path)
            continue
        label = f"[{i + 1}/{len(plans)}] {plan.name}" if plan.name else plan.label
        log(f"{label}: {plan.config['run']['n_chains']} chains x {plan.config['run']['n_generations']} "
            f"generations, {plan.config['run']['n_samples']} samples each ({_describe(plan.config)})")
        bar = Progress(plan.config["run"]["n_generations"], plan.config["run"]["n_chains"], label=label,
                       enabled=show_progress)
        try:
            run_plan(plan, path, resume=resume, chunk_size=chunk_size, progress=bar.update,
                     on_checkpoint=on_checkpoint)
        finally:
            bar.close()
        results[plan.label] = io.Results(path)
        if plots and writer:
            _plot_quietly(lambda: __import__("jaxcollapse.plots").plots.plot_run(path), log)
    if plots and sweep and writer:
        _plot_quietly(lambda: __import__("jaxcollapse.plots").plots.plot_sweep(out), log)
    return StudyOutcome(out, plans, results, skipped)


def _plot_quietly(draw, log):
    try:
        draw()
    except Exception as err:  # a figure must never lose a finished run's results
        log(f"warning: figures failed: {type(err).__name__}: {err}")


def _check_same_study(out: Path, plans) -> None:
    for plan in plans:
        path = out / plan.name if plan.name else out
        saved = path / "config.json"
        if saved.exists():
            old = io.read_json(saved)
            if run_digest(old) != plan.digest:
                diff = "; ".join(config_lib.differences(old, plan.config)) or "?"
                raise ConfigError(f"cannot resume {path}: its config differs from this one ({diff}); "
                                  f"use --force to start over")


def _settings_of(config: dict, sweep: dict) -> dict:
    out = {}
    for path in sweep:
        node = config
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[path] = node
    return out


def _describe(config: dict) -> str:
    family = {k: v for k, v in config["family"].items() if k != "name"}
    settings = ", ".join(f"{k}={v}" for k, v in family.items())
    regime = config["regime"]["kind"] + (f"({config['regime']['fraction']})" if "fraction" in config["regime"] else "")
    return f"{config['family']['name']}({settings}), {regime}"


def summary(results: "io.Results", max_metrics: int = 4) -> str:
    """A few lines: the median of key metrics at a few generations, collapse times, speed."""
    config = results.config
    n_gen = results.n_generations
    rule = collapse_rule(config)
    names = [n for n, v in results.metrics.items() if np.ndim(v) == 2]
    if rule and rule["metric"] in names:
        names.remove(rule["metric"])
        names.insert(0, rule["metric"])
    names = names[:max_metrics]
    gens = sorted({0, *[int(round(n_gen * f)) for f in (0.01, 0.1, 0.25, 0.5)], n_gen})
    gens = [g for g in gens if 0 <= g <= n_gen]
    width = max(12, *(len(n) + 2 for n in names)) if names else 12
    lines = [f"median over {results.n_chains} chains:",
             "  generation" + "".join(f"{n:>{width}}" for n in names)]
    for g in gens:
        cells = "".join(f"{np.median(results.metrics[n][:, g]):>{width}.4g}" for n in names)
        lines.append(f"  {g:>10}" + cells)
    if rule and rule["metric"] in results.metrics:
        times = collapse_times(results.metrics[rule["metric"]], rule)
        done = times >= 0
        text = f"collapse ({describe_rule(rule)}): {done.mean():.0%} of chains by generation {n_gen}"
        if done.any():
            text += f"; median time {np.median(times[done]):g} generations (among those)"
        lines.append(text)
    manifest = results.manifest
    lines.append(f"{manifest['wall_seconds']:.1f} s, {manifest['chain_generations_per_second']:.3g} "
                 f"chain-generations/s on {manifest['backend']}"
                 + (f"; {manifest['failed_chains']} chains had non-finite fits" if manifest["failed_chains"] else ""))
    return "\n".join(lines)


def default_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
