"""Running Plans chunk by chunk, with a checkpoint after every chunk, a progress bar, and the
results directory written at the end. The CLI is a thin layer over run_study(); tests and
notebooks may call it directly.
"""
from __future__ import annotations

import dataclasses
import datetime
import platform
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from jaxcollapse import config as config_lib
from jaxcollapse import io
from jaxcollapse.config import ConfigError
from jaxcollapse.study.analysis import derived_metrics, describe_config
from jaxcollapse.study.build import Plan, default_chunk, plan_study, run_digest


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

    from jaxcollapse.engine import ChainState

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
            f"generations, {plan.config['run']['n_samples']} samples each ({describe_config(plan.config)})")
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
