"""The cases of `python -m benchmarks.gpu`, each run in a process of its own, so that its peak device
memory is its own and a crash or a hang ends that case only:

    python -m benchmarks.gpu_cases CASE --out CASE.json --budget SECONDS [--scale S] [--smoke]

The case's JSON is rewritten after every row, so a case killed at its time limit still leaves the
rows it finished. Only the public API is used (jc.simulate, jaxcollapse.engine.ChainProgram start/advance,
jc.Gaussian, jc.GMM, jc.VAE, jc.Transformer, jaxcollapse.datasets); metric names and record layouts are looked up
defensively, since the engine's internals move.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import sys
import time
import traceback

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
# cases of families an earlier version lacked (skipped there): case -> the family's name in jaxcollapse
FAMILY_CASES = {"ngram": "NGram", "linear_regression": "LinearRegression", "kde": "KDE"}

FULL = {
    # the paper's GMM chain (experiments/paper_gmm.toml): as many generations as fit in timed_seconds
    # then the other schedule (the schedule setting: lane by lane / scanned) on the same generations, in compare_seconds;
    # then agreement_chains x agreement_generations of it here and on the host's CPU (float32 products on both)
    "gmm_paper": dict(n_chains=10_000, n_samples=1000, n_generations=2050, chunk=100, timed_seconds=100.0,
                      max_timed_chunks=None, goal_seconds=120.0, compare_seconds=30.0,
                      agreement_chains=8, agreement_generations=10,
                      # lane_block: an experiment (--set lane_block=1250): on an accelerator, step only the running
                      # lanes, gathered this many at a time, once few run (engine/pipeline.lane_layout steps all)
                      lane_block=None),
    "gaussian": dict(dims=(1, 10), chains=(10_000, 100_000, 1_000_000), n_samples=100, n_generations=30,
                     goal_rate=1e8),
    # experiments/paper_vae.toml's network and training; chain counts in order of importance for the goal
    "vae": dict(chains=(1, 256, 16), n_samples=1400, goal_ratio=5.0,
                family=dict(latent_dim=8, hidden=(128,), architecture="mlp", likelihood="bernoulli",
                            n_steps=1500, batch_size=64, learning_rate=1e-3, next_data="mean", init="scratch")),
    # one batched EM iteration per way of summing over the points (benchmarks/gpu_em_step.py)
    "em_step": dict(n_chains=10_000, iterations=50),
    # the built-in studies' first runs (their sweeps' first points) at more chains; rate rows, no goal
    "ngram": dict(study="experiments/paper_lm.toml", chains=(32, 1024), n_generations=10, overrides=()),
    "linear_regression": dict(study="experiments/regression.toml", chains=(1000, 100_000, 1_000_000),
                              n_generations=50, overrides=()),
    "kde": dict(study="experiments/kde.toml", chains=(200, 10_000), n_generations=100, overrides=("run.snapshot_at=[]",)),
    "scaling_gaussian": dict(first=2**18, max_chains=2**28, n_samples=100, n_generations=10),
    "scaling_gmm": dict(first=2**14, max_chains=2**22, n_samples=1000, n_generations=2),
    # experiments/paper_lm_transformer.toml's network and training; generation 0 and one generation on written text
    "transformer": dict(chains=(1, 256, 16), n_samples=256, n_generations=1, goal_ratio=5.0,
                        family=dict(block=64, d_model=64, n_heads=4, n_layers=2, epochs=5, batch_size=16,
                                    learning_rate=3e-3, prompt_length=4, decoding="sample", n_eval=32,
                                    tokenizer="char")),
}

# Smoke: every case tiny. Shapes are shared where the cases allow it (scaling_gaussian's 8 chains are the
# gaussian case's 1-D row, scaling_gmm's one row is gmm_paper's run), so that with the compilation cache that
# --smoke turns on, a later case reuses an earlier one's programs (compiling the GMM is most of the cost).
SMOKE = {
    "gmm_paper": dict(FULL["gmm_paper"], n_chains=4, n_samples=200, n_generations=2, chunk=2, timed_seconds=60.0,
                      max_timed_chunks=1, compare_seconds=60.0, agreement_chains=4, agreement_generations=2),
    "gaussian": dict(FULL["gaussian"], chains=(8,), n_samples=20, n_generations=3),
    "vae": dict(FULL["vae"], chains=(1, 2), n_samples=32,
                family=dict(latent_dim=2, hidden=(8,), n_steps=4, batch_size=8, n_eval=16)),
    "em_step": dict(n_chains=64, iterations=5),  # the agreement check's shapes: its programs serve both
    "ngram": dict(FULL["ngram"], chains=(2,), n_generations=2,  # one metric: the others' programs take 20 s to compile
                  overrides=("family.vocab_size=50", "run.n_samples=16", "family.n_eval=4",
                             'run.metrics=["heldout_perplexity"]')),
    "linear_regression": dict(FULL["linear_regression"], chains=(4,), n_generations=2),
    "kde": dict(FULL["kde"], chains=(4,), n_generations=2),
    "scaling_gaussian": dict(first=4, max_chains=8, n_samples=20, n_generations=3),
    "scaling_gmm": dict(first=4, max_chains=4, n_samples=200, n_generations=2),
    "transformer": dict(FULL["transformer"], chains=(2,), n_samples=16,  # one shape: compiling is the cost
                        family=dict(block=16, d_model=8, n_heads=2, n_layers=1, epochs=1, batch_size=8, prompt_length=2,
                                    n_eval=4, tokenizer="char")),
}


# ---------------------------------------------------------------- helpers
def now():
    return time.perf_counter()


def block(tree):
    import jax

    jax.block_until_ready(jax.tree_util.tree_leaves(tree))
    return tree


def peak_bytes():
    """The process's peak device memory so far (None where the backend keeps no allocator statistics, e.g. CPU)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - statistics are optional
        return None
    return None if not stats else stats.get("peak_bytes_in_use")


def is_out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def short_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip()[:600]}"


def jsonable(value):
    """numpy scalars and arrays to plain Python; NaN and infinities to None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(jsonable(data), f, indent=1, allow_nan=False)
    os.replace(tmp, path)


def version_of(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment():
    """Device, versions and which optional families this version of jaxcollapse has."""
    import jax

    import jaxcollapse as jc

    device = jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001
        pass
    versions = {name: version_of(name) for name in ("jax", "jaxlib", "flax", "optax", "numpyro", "numpy",
                                                    "scikit-learn", "jax-cuda12-plugin", "jax-cuda13-plugin")}
    versions["python"] = platform.python_version()
    versions["jaxcollapse"] = getattr(jc, "__version__", None)
    return {
        "device": {"kind": device.device_kind, "platform": device.platform, "count": jax.device_count(),
                   "bytes_limit": (stats or {}).get("bytes_limit")},
        "versions": {k: v for k, v in versions.items() if v is not None},
        "host": {"cpu_count": os.cpu_count(), "machine": platform.machine(), "system": platform.platform()},
        "families_present": {case: hasattr(jc, name) for case, name in FAMILY_CASES.items()},
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "compilation_cache_dir": os.environ.get("JAX_COMPILATION_CACHE_DIR"),
        "xla_optimizations_disabled": os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS") not in (None, "", "0"),
    }


def keep_nothing(params):
    """record= callable that keeps nothing per generation: memory stays bounded when metric names changed."""
    del params
    return {}


def pick_record(jc, family, source, names, n_samples):
    """`names` if this version records them, else keep_nothing (the fit flags are still recorded)."""
    from jaxcollapse.engine import ChainProgram

    try:
        ChainProgram(family, source, n_chains=1, n_generations=1, n_samples=n_samples, record=names)
        return names
    except ValueError:
        return keep_nothing


def fit_info(records):
    """The FitInfo (with n_iter) inside one chunk's records, wherever this version keeps it; None if absent."""
    if hasattr(records, "n_iter"):
        return records
    if isinstance(records, dict):
        candidates = list(records.values())
    elif isinstance(records, (tuple, list)):
        candidates = list(records)
    else:
        candidates = []
    candidates.append(getattr(records, "info", None))
    return next((c for c in candidates if hasattr(c, "n_iter")), None)


def failed_chains(records):
    """Chains with a non-finite fit in these records (None where this version records no flags)."""
    infos = [fit_info(r) for r in records]
    if any(info is None or not hasattr(info, "finite") for info in infos):
        return None
    finite = np.concatenate([np.asarray(i.finite).reshape(np.shape(i.finite)[0], -1) for i in infos], axis=1)
    return int(np.sum(~np.all(finite, axis=1)))


def time_program(jc, family, source, *, n_chains, n_generations, n_samples, record):
    """(records of the timed run, first run seconds, steady run seconds) for start() + advance(n_generations).

    The program is built (and its settings checked) once, outside the timing; the first run compiles,
    the second, with another key, is timed. Records come back to the host inside the timing, as in simulate().
    """
    from jaxcollapse.engine import ChainProgram

    program = ChainProgram(family, source, n_chains=n_chains, n_generations=n_generations, n_samples=n_samples,
                              record=record)
    return time_built(program, n_generations)


def time_built(program, n_generations):
    """time_program's timing of a program already built."""
    import jax

    def run(key):
        state, first = program.start(key)
        records = [first]
        if n_generations:
            state, more = program.advance(state, n_generations)
            records.append(more)
        block(state)
        return records

    began = now()
    run(jax.random.key(1))
    first = now() - began
    began = now()
    records = run(jax.random.key(0))
    return records, first, now() - began


def row_failed(case, label, error) -> bool:
    """Record one row's error in the case; True when larger rows should not be tried (out of memory)."""
    case.update(errors=case.data.get("errors", []) + [f"{label}: {short_error(error)}"])
    log(f"{case.data['name']} {label}: {short_error(error)}")
    return is_out_of_memory(error)


class Budget:
    def __init__(self, seconds):
        self.seconds = seconds
        self.began = now()

    def elapsed(self):
        return now() - self.began

    def fits(self, predicted_seconds):
        return self.elapsed() + predicted_seconds <= self.seconds


class Case:
    """One case's record, written to its JSON file after every change."""

    def __init__(self, name, path, smoke, budget_seconds):
        self.path = path
        self.data = {"name": name, "status": "running", "smoke": smoke, "budget_seconds": budget_seconds,
                     "rows": [], "notes": []}
        self.began = now()

    def update(self, **fields):
        self.data.update(fields)
        self.data["elapsed_seconds"] = now() - self.began
        write_json(self.path, self.data)

    def add_row(self, row):
        self.data["rows"].append(row)
        self.update()

    def note(self, text):
        self.data["notes"].append(text)
        log(f"{self.data['name']}: {text}")
        self.update()


def log(text):
    print(f"[gpu] {text}", flush=True)


def rate_row(n_chains, generations, first, steady, **extra):
    return dict(n_chains=n_chains, generations_timed=generations,
                chain_generations_per_second=n_chains * generations / steady, wall_seconds=steady,
                first_call_seconds=first, compile_seconds=max(first - steady, 0.0),
                peak_bytes_in_use=peak_bytes(), **extra)


# ---------------------------------------------------------------- the paper's GMM chain
def lane_statistics(n_iter):
    """EM iterations per generation over the chains: mean, max, and lane efficiency mean/max (vmapped lanes wait
    for the slowest chain unless compaction frees them)."""
    n_iter = np.asarray(n_iter, np.float64)
    if n_iter.ndim == 1:
        n_iter = n_iter[:, None]
    mean, most = n_iter.mean(axis=0), n_iter.max(axis=0)
    return {"mean_iterations": float(mean.mean()), "mean_of_max_iterations": float(most.mean()),
            "max_iterations": float(most.max()), "lane_efficiency": float(np.mean(mean / np.maximum(most, 1.0))),
            "chain_iterations": float(n_iter.sum()), "sum_of_max_iterations": float(most.sum())}


def replayed_efficiency(n_iter) -> dict:
    """Useful / run lane-iterations of a chunk's fits [chains, generations] under both schedules on this
    backend's layout, replayed (engine/schedule_replay.py): which one ran is settings.schedule."""
    import jax

    from jaxcollapse.engine import schedule_replay
    from jaxcollapse.families.em.slots import lane_efficiency

    by_generation = np.asarray(n_iter).T
    if jax.default_backend() == "cpu":
        return {"scan": lane_efficiency(by_generation), "lanes": schedule_replay.efficiency(by_generation, "lanes-cpu")}
    return {"scan": schedule_replay.efficiency(by_generation, "scan-accelerator"),
            "lanes": schedule_replay.efficiency(by_generation, "lanes-accelerator")}


def gmm_paper(case, cfg, budget, smoke):
    import jax

    import jaxcollapse as jc
    from jaxcollapse.engine import ChainProgram

    n, total = cfg["n_chains"], cfg["n_generations"]
    if cfg["lane_block"]:
        gathered_blocks(int(cfg["lane_block"]))
    family = jc.GMM(2, dim=2, covariance="full", tol=1e-5, max_iter=2000)
    source = family.make_params(weights=[1.0], means=[[0.0, 0.0]], covs=[np.eye(2)])
    record = pick_record(jc, family, source, ("component_std",), cfg["n_samples"])
    program = ChainProgram(family, source, n_chains=n, n_generations=total, n_samples=cfg["n_samples"],
                              record=record)
    chunk = cfg["chunk"]
    case.update(settings=dict(family="GMM(2, dim=2, covariance='full', tol=1e-5, max_iter=2000)",
                              source="N(0, I_2)", n_chains=n, n_samples=cfg["n_samples"], n_generations=total,
                              chunk_size=chunk, record=str(record), schedule=program.schedule,
                              lane_block=cfg["lane_block"]))

    # warm-up with another key: compiles start() and advance(chunk) on the same generations as the timed run
    began = now()
    state, _ = program.start(jax.random.key(1))
    block(state)
    start_first = now() - began
    began = now()
    state, _ = program.advance(state, chunk)
    block(state)
    chunk_first = now() - began
    del state
    case.update(warm_up=dict(start_seconds=start_first, first_chunk_seconds=chunk_first))
    log(f"gmm_paper: compiled and ran start {start_first:.1f} s, first chunk of {chunk} generations {chunk_first:.1f} s")

    began = now()
    state, records = program.start(jax.random.key(0))
    block(state)
    start_seconds = now() - began
    info0 = fit_info(records)
    timed_budget = min(cfg["timed_seconds"] * (1.0 if smoke else case.data["budget_scale"]),
                       budget.seconds - budget.elapsed() - 2.0)
    chunks, timed, done, all_iter, failed = [], 0.0, 0, [], np.zeros(n, bool)

    def write_row():
        """The row and the goal from the chunks timed so far (rewritten after each, so a stopped run keeps them)."""
        projected = start_seconds + timed * total / done
        compile_seconds = max(start_first - start_seconds, 0.0) + max(chunk_first - chunks[0]["seconds"], 0.0)
        row = dict(n_chains=n, generations_timed=done, chain_generations_per_second=n * done / timed,
                   wall_seconds=timed, compile_seconds=compile_seconds, peak_bytes_in_use=peak_bytes(),
                   start_seconds=start_seconds, first_start_seconds=start_first, first_chunk_seconds=chunk_first,
                   projected_seconds=projected, projected_with_compile_seconds=projected + compile_seconds,
                   failed_chains=int(failed.sum()) if all_iter else None)
        if all_iter:
            row["lanes"] = lane_statistics(np.concatenate(all_iter, axis=1))
            if info0 is not None:
                row["lanes_generation0"] = lane_statistics(np.asarray(info0.n_iter).reshape(n, -1))
        row["chunks"] = chunks
        case.data["rows"] = [row]
        case.update(goal=f"{n:,} chains x {total:,} generations under {cfg['goal_seconds']:.0f} s (compile "
                         f"excluded; projected linearly from generations 1-{done})",
                    goal_value=projected, goal_met=None if smoke else projected < cfg["goal_seconds"])

    while True:
        began = now()
        state, records = program.advance(state, chunk)
        block(state)
        seconds = now() - began
        info = fit_info(records)
        n_iter = None if info is None else np.asarray(info.n_iter).reshape(n, -1)
        steps = chunk if n_iter is None else n_iter.shape[1]
        entry = {"first_generation": done + 1, "generations": steps, "seconds": seconds}
        if n_iter is not None:
            all_iter.append(n_iter)
            failed |= ~np.all(np.asarray(info.finite).reshape(n, -1), axis=1)
            lanes = lane_statistics(n_iter)
            entry.update(mean_iterations=lanes["mean_iterations"], mean_of_max_iterations=lanes["mean_of_max_iterations"],
                         lane_efficiency=lanes["lane_efficiency"],
                         converged_fraction=float(np.mean(np.asarray(info.converged))),
                         ns_per_chain_iteration=1e9 * seconds / lanes["chain_iterations"],
                         us_per_max_iteration=1e6 * seconds / lanes["sum_of_max_iterations"],
                         replayed_lane_efficiency=replayed_efficiency(n_iter))
        chunks.append(entry)
        timed, done = timed + seconds, done + steps
        write_row()
        log(f"gmm_paper: generations {entry['first_generation']}-{done}: {seconds:.2f} s"
            + (f", EM iterations mean {entry['mean_iterations']:.1f}, slowest chain per generation "
               f"{entry['mean_of_max_iterations']:.1f} on average" if n_iter is not None else ""))
        if done >= total or (cfg["max_timed_chunks"] and len(chunks) >= cfg["max_timed_chunks"]):
            break
        if timed + seconds > timed_budget:  # the next chunk would not fit
            break
    if done < total:
        case.note("projection is linear in generations from the early ones timed; early generations need the most "
                  "EM iterations (CPU whole run: mean ~8 per fit against ~45 in the first 20), so it is an upper bound")
    del state  # the other schedule's run needs the device memory
    try:
        compare_schedules(case, cfg, budget, smoke, program, chunks,
                          np.concatenate(all_iter, axis=1) if all_iter else None,
                          lambda: ChainProgram(family, source, n_chains=n, n_generations=total,
                                               n_samples=cfg["n_samples"], record=record))
    except Exception as error:  # noqa: BLE001 - the timed rows stand without the comparison
        case.update(comparison=dict(case.data.get("comparison") or {}, error=short_error(error)))
        log(f"gmm_paper: the other schedule failed: {short_error(error)}")
    if not cfg["agreement_chains"]:
        return
    try:
        cpu_agreement(case, cfg, family, source)
    except Exception as error:  # noqa: BLE001 - a missing check, not a failed case
        case.update(cpu_agreement=dict(error=short_error(error)))
        log(f"gmm_paper: the CPU agreement check failed: {short_error(error)}")


def gathered_blocks(block: int):
    """The accelerator lane layout with running lanes gathered `block` at a time once few run, for this process
    (programs traced from now on; the replayed efficiencies keep the library's layout)."""
    from jaxcollapse.engine import pipeline

    library_layout = pipeline.lane_layout

    def layout(lanes, kind):
        sizes = library_layout(lanes, kind)
        return sizes._replace(block=min(lanes, block)) if kind == "accelerator" else sizes

    pipeline.lane_layout = layout


def cpu_agreement(case, cfg, family, source):
    """A few chains of the same GMM run here and on the host's CPU, same key: how far same-key runs drift apart.
    Generation 0 agrees only up to EM's stopping rule: a point that differs by rounding (the devices' normal
    transforms) can move the iteration at which |change in log-likelihood| < tol, and on these flat two-component
    fits one iteration moves the parameters by ~1e-2 (the H100, 2026-11-27: 1.2e-2, 6 of 8 chains with the same
    iteration counts). Later generations drift apart as differences compound. The products' precision is
    checked from identical fit states by the em_step case (float32 rounding: ~3e-7 there)."""
    import jax

    import jaxcollapse as jc

    kwargs = dict(n_chains=cfg["agreement_chains"], n_generations=cfg["agreement_generations"],
                  n_samples=cfg["n_samples"])
    here = jc.simulate(jax.random.key(7), family, source, **kwargs)
    cpu = jc.simulate(jax.random.key(7), family, source, devices=jax.devices("cpu"), **kwargs)

    def relative(a, b):  # per generation, the largest over chains and entries
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        gap = np.abs(a - b) / np.maximum(np.abs(b), 1e-6)
        return gap.reshape(gap.shape[0], gap.shape[1], -1).max(axis=(0, 2))

    means, covs = relative(here.params.means, cpu.params.means), relative(here.params.covs, cpu.params.covs)
    result = dict(n_chains=kwargs["n_chains"], generations=kwargs["n_generations"] + 1, device=str(jax.devices()[0]),
                  max_relative_difference_means=means.tolist(), max_relative_difference_covs=covs.tolist(),
                  generation0_same_iterations=float(np.mean(np.asarray(here.info.n_iter)[:, 0]
                                                            == np.asarray(cpu.info.n_iter)[:, 0])))
    case.update(cpu_agreement=result)
    log(f"gmm_paper: against the CPU, generation 0's means and covariances differ by at most {means[0]:.1e} / "
        f"{covs[0]:.1e} (relative); the last generation's by {means[-1]:.1e} / {covs[-1]:.1e}")


def compare_schedules(case, cfg, budget, smoke, program, chunks, n_iter, build):
    """The other schedule (scanned <-> lane by lane) on the generations just timed, same key and chunks, in the
    same process: the A/B that decides the schedule setting's "auto" on this device. Its chunks' seconds
    stand beside the timed ones; same_fits says whether both ran the same fits (equal EM iteration counts)."""
    import jax

    from jaxcollapse import settings

    other_name = "lanes" if program.schedule == "scan" else "scan"
    began = now()
    with settings.using(schedule=other_name):  # the program keeps the settings it was built under
        other = build()
    seconds_left = min(cfg["compare_seconds"] * (1.0 if smoke else case.data["budget_scale"]),
                       budget.seconds - budget.elapsed() - 2.0)
    result = dict(schedule=other.schedule, chunks=[], same_fits=None)
    case.update(comparison=result)
    if seconds_left <= 0:
        case.note("no time was left to time the other schedule")
        return
    state, _ = other.start(jax.random.key(1))  # compile, on another key as the timed run did
    state, _ = other.advance(state, cfg["chunk"])
    block(state)
    result["warm_up_seconds"] = now() - began
    state, _ = other.start(jax.random.key(0))
    block(state)
    timed, theirs, ratio = 0.0, [], 1.0
    for entry in chunks:
        if timed + entry["seconds"] * ratio > seconds_left:  # predicted from the ratio so far, it would not fit
            break
        began = now()
        state, records = other.advance(state, entry["generations"])
        block(state)
        seconds = now() - began
        timed += seconds
        result["chunks"].append(dict(first_generation=entry["first_generation"], generations=entry["generations"],
                                     seconds=seconds, first_run_seconds=entry["seconds"]))
        ratio = timed / sum(c["first_run_seconds"] for c in result["chunks"])
        info = fit_info(records)
        if info is not None:
            theirs.append(np.asarray(info.n_iter).reshape(cfg["n_chains"], -1))
        case.update(comparison=result)
    if result["chunks"]:
        mine = sum(c["first_run_seconds"] for c in result["chunks"])
        result["seconds_ratio"] = timed / mine  # the other schedule's time / the first run's, same generations
        if theirs and n_iter is not None:
            ours = np.concatenate(theirs, axis=1)
            result["same_fits"] = bool(np.array_equal(ours, n_iter[:, :ours.shape[1]]))
        case.update(comparison=result)
        named = {"scan": "scanned"}
        log(f"gmm_paper: {named.get(other.schedule, 'lane by lane')} on generations 1-"
            f"{sum(c['generations'] for c in result['chunks'])}: {timed:.2f} s, {result['seconds_ratio']:.2f}x the "
            f"time {named.get(program.schedule, 'lane by lane')}")


# ---------------------------------------------------------------- Gaussian chains
def gaussian(case, cfg, budget, smoke):
    import jaxcollapse as jc

    rows_wanted = sorted(((d, n) for d in cfg["dims"] for n in cfg["chains"]), key=lambda dn: (dn[0] * dn[1], dn[0]))
    generations = cfg["n_generations"] + 1  # generation 0 (fit on real data) is timed too
    case.update(settings=dict(family="Gaussian(dim)", source="N(0, I)", n_samples=cfg["n_samples"],
                              n_generations=cfg["n_generations"], order="rows run in increasing n_chains x dim, "
                              "so a row's peak_bytes_in_use (the process's peak so far) is its own"))
    last = None
    for i, (dim, n) in enumerate(rows_wanted):
        if last is not None:
            scale = (dim * n) / (last["dim"] * last["n_chains"])
            predicted = last["compile_seconds"] + 2 * last["wall_seconds"] * scale
            if not budget.fits(predicted):
                case.update(skipped_rows=[f"dim={d} n_chains={m}" for d, m in rows_wanted[i:]])
                case.note(f"time budget: skipped {len(rows_wanted) - i} larger rows (next predicted {predicted:.1f} s)")
                break
        family = jc.Gaussian(dim=dim)
        source = family.make_params(mean=np.zeros(dim), cov=np.eye(dim))
        record = pick_record(jc, family, source, ("log_det_cov",), cfg["n_samples"])
        try:
            records, first, steady = time_program(jc, family, source, n_chains=n, n_generations=cfg["n_generations"],
                                               n_samples=cfg["n_samples"], record=record)
        except Exception as error:  # noqa: BLE001 - one row's failure must not end the case
            if row_failed(case, f"dim={dim} n_chains={n}", error):
                case.note(f"out of memory at dim={dim} n_chains={n}; larger rows skipped")
                break
            continue
        last = rate_row(n, generations, first, steady, dim=dim, config=f"dim={dim}", failed_chains=failed_chains(records))
        del records
        case.add_row(last)
        log(f"gaussian dim={dim} n_chains={n}: {last['chain_generations_per_second']:.3g} chain-generations/s "
            f"({steady:.3f} s, compile {last['compile_seconds']:.1f} s)")
    one_d = [r["chain_generations_per_second"] for r in case.data["rows"] if r["dim"] == 1]
    best = max(one_d) if one_d else None
    case.update(goal=f">= {cfg['goal_rate']:.0e} chain-generations/s in 1-D (best 1-D row)", goal_value=best,
                goal_met=None if smoke or best is None else best >= cfg["goal_rate"])


# ---------------------------------------------------------------- VAE
def vae(case, cfg, budget, smoke):
    import jaxcollapse as jc
    from jaxcollapse.datasets import load_digits

    train, _ = load_digits(seed=0)
    family = jc.VAE(**cfg["family"])
    record = pick_record(jc, family, train, ("elbo_source",), cfg["n_samples"])
    case.update(settings=dict(family=f"VAE({cfg['family']})", data="load_digits(seed=0) training split",
                              n_samples=cfg["n_samples"], n_generations=0,
                              what="one generation per chain: the generation-0 fit on real digits and its metrics "
                                   "(a later generation runs the same fit on generated images)"))
    chain_ratio(case, cfg, budget, smoke, jc, family, train, record, n_generations=0, label="vae")


def chain_ratio(case, cfg, budget, smoke, jc, family, source, record, n_generations, label):
    """Rows for cfg['chains'] chains (in that order, while the budget lasts); goal: the most chains in under
    cfg['goal_ratio'] times the time of one."""
    last = None
    for n in cfg["chains"]:
        if last is not None and not budget.fits(last["first_call_seconds"] + last["wall_seconds"]):
            case.note(f"time budget: skipped n_chains={n} and later")
            break
        try:
            records, first, steady = time_program(jc, family, source, n_chains=n, n_generations=n_generations,
                                                  n_samples=cfg["n_samples"], record=record)
        except Exception as error:  # noqa: BLE001
            if row_failed(case, f"n_chains={n}", error):
                break
            continue
        last = rate_row(n, n_generations + 1, first, steady, config=f"{n} chains", failed_chains=failed_chains(records))
        case.add_row(last)
        log(f"{label} n_chains={n}: {steady:.2f} s (compile {last['compile_seconds']:.1f} s)")
    seconds = {r["n_chains"]: r["wall_seconds"] for r in case.data["rows"]}
    one, most = min(seconds, default=None), max(seconds, default=None)
    ratio = seconds[most] / seconds[one] if seconds and most != one else None
    case.update(goal=f"{max(cfg['chains'])} chains in under {cfg['goal_ratio']:.0f}x the time of 1", goal_value=ratio,
                goal_compared=f"{most} chains / {one} chain" if ratio is not None else None,
                goal_met=None if smoke or ratio is None or most != max(cfg["chains"]) else ratio < cfg["goal_ratio"])


# ---------------------------------------------------------------- Transformer
def transformer(case, cfg, budget, smoke):
    import jaxcollapse as jc

    text = jc.datasets.load_text(cfg["family"]["tokenizer"], block=cfg["family"]["block"])
    family = jc.Transformer(vocab_size=len(text.vocab), **cfg["family"])
    source = jc.Source(data=text.train, heldout=text.heldout[:256])
    record = pick_record(jc, family, source, ("heldout_perplexity", "generated_perplexity"), cfg["n_samples"])
    case.update(settings=dict(family=f"Transformer({cfg['family']})", data="load_text char blocks, shipped corpus",
                              n_samples=cfg["n_samples"], n_generations=cfg["n_generations"],
                              what="generation 0 (fit on real blocks, metrics) and one generation on the text it "
                                   "writes (writing, fit, metrics), per chain"))
    chain_ratio(case, cfg, budget, smoke, jc, family, source, record, n_generations=cfg["n_generations"],
                label="transformer")


# ---------------------------------------------------------------- scaling sweeps
def sweep(case, cfg, budget, build, label):
    """n_chains doubling from cfg['first'] until out of memory, the time budget, or cfg['max_chains']."""
    import jaxcollapse as jc

    family, source, record_names = build(jc)
    record = pick_record(jc, family, source, record_names, cfg["n_samples"])
    generations = cfg["n_generations"] + 1
    case.update(settings=dict(family=label, n_samples=cfg["n_samples"], n_generations=cfg["n_generations"],
                              record=str(record), doubling_from=cfg["first"], max_chains=cfg["max_chains"]))
    n, last, stopped = cfg["first"], None, None
    while n <= cfg["max_chains"]:
        if last is not None:
            predicted = last["compile_seconds"] + 2 * 2 * last["wall_seconds"]
            if not budget.fits(predicted):
                stopped = f"time budget (next run predicted {predicted:.1f} s)"
                break
        try:
            records, first, steady = time_program(jc, family, source, n_chains=n, n_generations=cfg["n_generations"],
                                               n_samples=cfg["n_samples"], record=record)
        except Exception as error:  # noqa: BLE001
            stopped = (f"out of memory at n_chains={n}" if is_out_of_memory(error) else f"error at n_chains={n}")
            case.update(stop_error=short_error(error))
            break
        last = rate_row(n, generations, first, steady, config=f"{n} chains", failed_chains=failed_chains(records))
        del records
        case.add_row(last)
        log(f"{case.data['name']} n_chains={n}: {last['chain_generations_per_second']:.3g} chain-generations/s "
            f"({steady:.3f} s, compile {last['compile_seconds']:.1f} s)")
        n *= 2
    case.update(stopped_by=stopped or f"max_chains {cfg['max_chains']} reached")
    log(f"{case.data['name']}: stopped by {case.data['stopped_by']}")


def scaling_gaussian(case, cfg, budget, smoke):
    def build(jc):
        family = jc.Gaussian(dim=1)
        return family, family.make_params(mean=[0.0], cov=[[1.0]]), ("log_det_cov",)

    sweep(case, cfg, budget, build, "Gaussian(dim=1), source N(0, 1)")


def em_step(case, cfg, budget, smoke):
    """One EM iteration of the paper's GMM at many lanes, per way of summing (benchmarks/gpu_em_step.py); goal:
    the sums setting's "auto" picks the faster way on this device, and every way agrees with the CPU."""
    import jax

    from benchmarks.gpu_em_step import measure
    from jaxcollapse.families.em.reductions import by_product

    rows = measure(cfg["n_chains"], cfg["iterations"], log=log)
    case.data["rows"] = rows
    seconds = {row["config"]: row["us_per_iteration"] for row in rows}
    chosen, other = ("product/float32", "reduce/float32") if by_product() else ("reduce/float32", "product/float32")
    worst = max(max(row["agreement_means"], row["agreement_covs"]) for row in rows)
    case.update(goal=f"on {jax.devices()[0].platform}, auto's way ({chosen}) takes at most the other's time "
                     f"(value: the ratio), and every way agrees with the CPU to float32 rounding (worst: {worst:.1e})",
                goal_value=seconds[chosen] / seconds[other],
                goal_met=None if smoke else bool(seconds[chosen] <= seconds[other] and worst < 1e-5))


def study_chains(case, cfg, budget, smoke):
    """A built-in study's first run at cfg['chains'] chains and cfg['n_generations'] generations (the study's
    family, source, regime and metrics, as `jaxcollapse run` builds them): one rate row per chain count."""

    from jaxcollapse.study import config as config_lib
    from jaxcollapse.study.build import build

    last = None
    for n in cfg["chains"]:
        if last is not None and not budget.fits(last["first_call_seconds"] + last["wall_seconds"] * n / last["n_chains"]):
            case.note(f"time budget: skipped n_chains={n} and later")
            break
        overrides = list(cfg["overrides"]) + [f"run.n_chains={n}", f"run.n_generations={cfg['n_generations']}"]
        _, runs = config_lib.load_study(ROOT / cfg["study"], overrides)
        name, config = runs[0]
        plan = build(name, config)
        case.update(settings=dict(study=cfg["study"], run=name, family=config["family"], regime=config["regime"],
                                  n_samples=config["run"]["n_samples"], n_generations=cfg["n_generations"],
                                  metrics=config["run"].get("metrics")))
        try:
            records, first, steady = time_built(plan.program, cfg["n_generations"])
        except Exception as error:  # noqa: BLE001
            if row_failed(case, f"n_chains={n}", error):
                break
            continue
        last = rate_row(n, cfg["n_generations"] + 1, first, steady, config=f"{n} chains",
                        failed_chains=failed_chains(records))
        case.add_row(last)
        log(f"{case.data['name']} n_chains={n}: {last['chain_generations_per_second']:.3g} chain-generations/s "
            f"({steady:.3f} s, compile {last['compile_seconds']:.1f} s)")


def scaling_gmm(case, cfg, budget, smoke):
    def build(jc):
        family = jc.GMM(2, dim=2, covariance="full", tol=1e-5, max_iter=2000)
        return family, family.make_params(weights=[1.0], means=[[0.0, 0.0]], covs=[np.eye(2)]), ("component_std",)

    sweep(case, cfg, budget, build, "GMM(2, dim=2, full, tol=1e-5, max_iter=2000), source N(0, I_2) "
                                    "(early generations: the costliest EM fits)")


CASES = {"gmm_paper": gmm_paper, "gaussian": gaussian, "vae": vae, "scaling_gaussian": scaling_gaussian,
         "scaling_gmm": scaling_gmm, "transformer": transformer, "em_step": em_step,
         "ngram": study_chains, "linear_regression": study_chains, "kde": study_chains}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", type=float, required=True, help="seconds this case may use, compiles included")
    parser.add_argument("--scale", type=float, default=1.0, help="the run's --budget-scale")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="replace one of the case's settings (FULL / SMOKE above), e.g. --set chunk=100")
    args = parser.parse_args(argv)
    cfg = dict((SMOKE if args.smoke else FULL)[args.case])
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in cfg:
            parser.error(f"--set: {args.case} has no setting {name!r}; it has {sorted(cfg)}")
        cfg[name] = json.loads(value)
    case = Case(args.case, args.out, args.smoke, args.budget)
    budget = Budget(args.budget)
    case.update(budget_scale=args.scale, overrides=args.set)
    try:
        case.update(environment=environment())
        CASES[args.case](case, cfg, budget, args.smoke)
        case.update(status="ok" if case.data["rows"] else "error",
                    **({} if case.data["rows"] else {"error": "no row finished"}))
    except Exception as error:  # noqa: BLE001 - recorded, the parent goes on with the next case
        traceback.print_exc()
        case.update(status="error", error=short_error(error), traceback=traceback.format_exc()[-3000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
