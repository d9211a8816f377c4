"""Running Plans chunk by chunk, with a checkpoint after every chunk, a progress bar, and the
results directory written at the end. The CLI is a thin layer over run_study(); tests and
notebooks may call it directly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import platform
import time
from pathlib import Path
from typing import Callable

import jax
import jaxlib
import numpy as np
from jax.experimental import multihost_utils

import jaxcollapse
from jaxcollapse.engine import ChainState
from jaxcollapse.progress import Progress
from jaxcollapse.store import checkpoints
from jaxcollapse.store import runs as io
from jaxcollapse.store.folder import ResultsFolder
from jaxcollapse.study import config as config_lib
from jaxcollapse.study import figures
from jaxcollapse.study.analysis import derived_metrics, describe_config
from jaxcollapse.study.build import Plan, default_chunk, plan_study, run_digest
from jaxcollapse.study.config import ConfigError


def environment() -> dict:
    return {
        "jaxcollapse": jaxcollapse.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
    }


def run_plan(plan: Plan, path: Path, *, folder=None, resume: bool = False, chunk_size: int | None = None,
             progress: Callable[[int], None] | None = None, on_checkpoint: Callable[[int], None] | None = None,
             allow_other_path: bool = False):
    """Run one plan into its directory `path`; folder: that directory's ResultsFolder, claimed by
    run_study (needed on the process that writes; the others only read a checkpoint to resume).

    After each chunk its records and the changed parts of the carry go to folder/checkpoint/
    (O(chunk)); the records are merged once, at the end. Returns the chain.Result and the manifest.
    The manifest and the checkpoint hold the execution record (which code ran: settings.Resolved.record());
    resuming a checkpoint written on another path is refused unless allow_other_path.
    """
    program, run = plan.program, plan.config["run"]
    n_generations = run["n_generations"]
    chunk = chunk_size or run.get("chunk_size") or default_chunk(n_generations)
    key = jax.random.key(run["seed"])
    began, resumed = time.perf_counter(), False
    writer = jax.process_index() == 0  # several processes (--distributed): all compute, process 0 writes
    if writer and folder is None:
        raise ValueError("folder is required: the claimed ResultsFolder of path (see run_study)")
    saved_at = Path(path) / checkpoints.FOLDER
    execution = dataclasses.replace(program.execution, plugins=plan.plugins).record()
    earlier = []
    if resume and checkpoints.exists(saved_at):
        state_like, records_like = jax.eval_shape(program.start, key)
        carry_like = jax.eval_shape(program.layout.gather, state_like.carry)  # checkpoints hold n_chains rows
        checkpoint, generation, carry, chunks, wall_before = checkpoints.Checkpoint.resume(
            saved_at, digest=plan.digest, carry_like=carry_like, records_like=records_like, tidy=writer,
            execution=execution, allow_other_path=allow_other_path)
        earlier = checkpoint.earlier
        state = program.device_state(ChainState(carry, generation))
        resumed = True
    else:
        if writer:
            folder.write_json("config.json", plan.config)
            checkpoint = checkpoints.Checkpoint.fresh(folder.make_scratch(checkpoints.FOLDER), plan.digest, execution)
        state, first = program.start(key)
        chunks, wall_before = [first], 0.0
        carry = _without_scratch(program, program.host_state(state).carry)  # from every device (and process), trimmed
        if writer:
            checkpoint.save(generation=0, first=0, carry=carry, records=first,
                            wall_seconds=time.perf_counter() - began)
    if progress is not None:
        progress(state.generation)
    while state.generation < n_generations:
        done = state.generation
        state, records = program.advance(state, chunk)
        chunks.append(records)
        carry = _without_scratch(program, program.host_state(state).carry)
        if writer:
            checkpoint.save(generation=state.generation, first=done + 1, carry=carry, records=records,
                            wall_seconds=wall_before + time.perf_counter() - began)
        if progress is not None:
            progress(state.generation)
        if on_checkpoint is not None:
            on_checkpoint(state.generation)
    wall = wall_before + time.perf_counter() - began
    result = program.result(state, chunks, wall)
    del chunks
    manifest = {
        "run": plan.label, "study": plan.config.get("name", ""), "config_digest": plan.digest,
        "seed": run["seed"], "n_chains": run["n_chains"], "n_generations": n_generations,
        "n_samples": run["n_samples"], "chunk_size": chunk, "resumed": resumed,
        "wall_seconds": round(wall, 3),
        "chain_generations_per_second": round(run["n_chains"] * n_generations / max(wall, 1e-9), 1),
        "failed_chains": int(np.sum(result.failed)),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **environment(),
        "execution": execution,
        **({"earlier_execution": earlier} if earlier else {}),  # resumed over another path, or an unrecorded one
    }
    result = _params_apart(result, program)
    extra = derived_metrics(plan.config, plan.family, plan.source, result.params)
    if writer:
        io.save_run(folder, result, plan.config, manifest, extra)
        folder.drop_scratch(checkpoints.FOLDER, checkpoints.owns)
    _sync(f"saved {plan.label}")
    return result, manifest


def _without_scratch(program, carry):
    """The carry with the snapshot buffer's scratch slot zeroed. The buffer holds one slot per snapshot
    generation and, last, one that takes every other generation's write and is never read; left as it
    is, the whole buffer would change, and be rewritten to the checkpoint, after every chunk. Zeroed,
    it changes only at snapshot generations. (Skipped if the buffer is not laid out so.)"""
    snapshots = getattr(carry, "snapshots", None)
    snapshot_at = getattr(getattr(program, "spec", None), "snapshot_at", None)
    if snapshots is None or snapshot_at is None or np.ndim(snapshots) < 2 or snapshots.shape[1] != len(snapshot_at) + 1:
        return carry
    kept = np.asarray(snapshots)
    return carry._replace(snapshots=np.concatenate([kept[:, :-1], np.zeros_like(kept[:, -1:])], axis=1))


def _sync(name: str) -> None:
    """Wait for every process (after process 0 wrote what the others read next); nothing on one process."""
    if jax.process_count() > 1:
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
    written: list = dataclasses.field(default_factory=list)  # every file this call wrote (process 0)


def run_study(study, out=None, *, overrides=(), resume: bool = False, force: bool = False,
              chunk_size: int | None = None, show_progress: bool | None = None, plots: bool = True,
              log: Callable[[str], None] | None = None, on_checkpoint=None, devices=None,
              allow_other_path: bool = False) -> StudyOutcome:
    """Run a study file into `out` (default results/<name>): one run, or one subdirectory per sweep run.

    `out` must be new, empty, or a folder jaxcollapse made (store/folder.py): force replaces only the
    files the tool wrote there; resume continues the same study (allow_other_path: also from a checkpoint
    written on another execution path). devices: where the chains run (see simulate); after
    jax.distributed.initialize() every process runs this with the same arguments, all compute and
    process 0 writes. A study's `[run] x64` switches JAX's float64 on (or off) for the whole call,
    before anything is built, and back afterwards.
    """
    study = Path(study)
    overrides, notice = _drop_late_snapshots(study, list(overrides))
    x64 = config_lib.study_x64(config_lib.load_study(study, overrides)[1])
    with precision(x64):
        return _run_study(study, out, overrides=overrides, notice=notice, resume=resume, force=force,
                          chunk_size=chunk_size, show_progress=show_progress, plots=plots, log=log,
                          on_checkpoint=on_checkpoint, devices=devices, allow_other_path=allow_other_path)


@contextlib.contextmanager
def precision(x64: bool | None):
    """JAX's float64 switch set to x64 inside the block (None: left as it is), restored after. Arrays made
    before keep their dtype, and compiled programs are keyed by the switch, so runs in either precision
    may follow each other in one process; a run must not mix them (its checkpoint refuses to)."""
    before = bool(jax.config.jax_enable_x64)
    if x64 is None or x64 == before:
        yield
        return
    jax.config.update("jax_enable_x64", x64)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def _run_study(study: Path, out, *, overrides, notice, resume, force, chunk_size, show_progress, plots, log,
               on_checkpoint, devices, allow_other_path) -> StudyOutcome:
    log = log or (lambda message: None)
    writer = jax.process_index() == 0
    raw, plans = plan_study(study, overrides, devices)
    if notice and writer:
        log(notice)
    out = Path(out) if out is not None else Path("results") / raw["name"]
    if chunk_size is not None:
        chunk_size = config_lib._int("--chunk-size", chunk_size, 1)
    sweep = config_lib.sweep_settings(raw)
    identity = {"name": raw["name"], "runs": [plan.name for plan in plans]}
    folder = ResultsFolder.claim(out, force=force, resume=resume, study=identity) if writer else None
    try:
        if resume:
            _check_same_study(out, plans)
        if writer:
            if sweep:
                folder.write_json("study.json", {
                    "name": raw["name"], "description": raw.get("description", ""), "sweep": list(sweep),
                    "runs": [{"name": p.name, "settings": _settings_of(p.config, sweep)} for p in plans]})
            if not folder.path("study.toml").exists():
                folder.copy_in(study, "study.toml")
            for plan in plans:
                if plan.name:
                    folder.make_folder(plan.name)
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
                run_plan(plan, path, folder=folder.within(plan.name) if writer else None, resume=resume,
                         chunk_size=chunk_size, progress=bar.update, on_checkpoint=on_checkpoint,
                         allow_other_path=allow_other_path)
            finally:
                bar.close()
            results[plan.label] = io.Results(path)
            if plots and writer:
                _plot_quietly(lambda: folder.adopt(figures.plot_run(path)), log)
        if plots and sweep and writer:
            _plot_quietly(lambda: folder.adopt(figures.plot_sweep(out)), log)
        return StudyOutcome(out, plans, results, skipped, folder.written if writer else [])
    finally:
        if folder is not None:
            folder.release()


def _drop_late_snapshots(study: Path, overrides: list) -> tuple[list, str | None]:
    """--set run.n_generations=N below some of the study's snapshot_at: those generations are dropped
    (an extra --set run.snapshot_at=[...]) and a one-line notice says so. An explicit
    --set run.snapshot_at is left to the config check."""
    keys = {config_lib.parse_override(text)[0] for text in overrides}
    if "run.n_generations" not in keys or "run.snapshot_at" in keys:
        return overrides, None
    run = config_lib.apply_overrides(config_lib.read(study), overrides).get("run", {})
    n, snapshot_at = run.get("n_generations"), run.get("snapshot_at")
    if not (config_lib._is_int(n) and isinstance(snapshot_at, list) and all(map(config_lib._is_int, snapshot_at))):
        return overrides, None
    kept, dropped = [g for g in snapshot_at if g <= n], [g for g in snapshot_at if g > n]
    if not dropped:
        return overrides, None
    notice = (f"note: run.n_generations = {n}: the study's snapshots at generation{'s' * (len(dropped) > 1)} "
              f"{', '.join(map(str, dropped))} are dropped (run.snapshot_at = {kept})")
    return [*overrides, f"run.snapshot_at={kept}"], notice


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
            if not isinstance(old, dict) or "run" not in old:
                raise ConfigError(f"cannot resume {path}: its config.json is not a jaxcollapse config")
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
