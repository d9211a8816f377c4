"""One prepared GPU benchmark: every accelerator goal of jaxcollapse measured in a single short run.

    python -m benchmarks.gpu OUTDIR                 the whole suite (about 8 min on one H100, compiles included)
    python -m benchmarks.gpu OUTDIR --smoke         every case tiny (CPU, about a minute on 2 cores)
    python -m benchmarks.gpu OUTDIR --budget-scale 2 --cases gmm_paper,vae

Prints one table and writes OUTDIR/gpu.json (rewritten after every case, so a run cut short still
leaves what it finished): device, versions, date, and per case its rows (n_chains, generations
timed, chain-generations per second, wall and compile seconds, peak device memory), its goal and
whether it was met. Cases, in order:

  gmm_paper         the paper's GMM chain (K = 2, 2-D, full, tol 1e-5, 1,000 samples), 10,000 chains in
                    chunks of 100 generations, as many as fit in ~100 s (all 2,050 on an H100: 71 s), else
                    projected to 2,050; EM lane statistics per chunk, with both schedules' lane efficiency
                    replayed; then the other schedule (scanned <-> lane by lane) times the same generations
                    in the same process ("comparison": seconds_ratio); then 8 chains x 11 generations of it
                    here and on the host's CPU, same key ("cpu_agreement": how far same-key runs drift)
  em_step           one batched EM iteration at 10,000 lanes per way of summing over the points (a product,
                    fused reductions; at TF32 too), and its agreement with the CPU from the same fit states
  gaussian          Gaussian chains, dim 1 and 10, at 1e4, 1e5, 1e6 chains
  vae               1, 256, 16 chains of one VAE generation on the digits
  transformer       1, 256, 16 chains of the paper_lm_transformer network: generation 0 and one more
  ngram, linear_regression, kde
                    the built-in studies paper_lm, regression and kde (their first runs) at more chains
  scaling_gaussian  chain-generations/s against n_chains (doubling) until out of memory or time
  scaling_gmm       the same for the paper's GMM

Each case runs in a process of its own (benchmarks/gpu_cases.py) with a time budget, compiles
included, and a hard limit after which it is stopped; the total stays under --total-budget.
Compile time is the first call minus a steady call of the same shapes with another key. Peak
memory is `memory_stats()['peak_bytes_in_use']` of the case's process (None on CPU). --smoke
disables most XLA optimisations to compile fast: its timings mean nothing, it checks the script.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from benchmarks.gpu_cases import FAMILY_CASES, write_json

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (case, budget in seconds on one H100 at --budget-scale 1, compiles included)
CASES = [("gmm_paper", 190.0), ("em_step", 30.0), ("gaussian", 35.0), ("vae", 45.0), ("transformer", 55.0),
         ("ngram", 20.0), ("linear_regression", 20.0), ("kde", 20.0), ("scaling_gaussian", 30.0), ("scaling_gmm", 35.0)]
TOTAL_BUDGET = 480.0        # seconds for the whole run at --budget-scale 1
SMOKE_CASE_BUDGET = 150.0   # smoke work is fixed and tiny; the budget is only a guard


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", help="folder for gpu.json (created if missing)")
    parser.add_argument("--smoke", action="store_true", help="every case tiny, to check the script on a CPU")
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="multiply every time budget (default 1: about 8 min on one H100)")
    parser.add_argument("--total-budget", type=float, default=TOTAL_BUDGET,
                        help=f"seconds for the whole run before scaling (default {TOTAL_BUDGET:.0f})")
    parser.add_argument("--cases", default=None, help="comma-separated subset of: " + ", ".join(n for n, _ in CASES))
    parser.add_argument("--force", action="store_true", help="replace an existing OUTDIR/gpu.json")
    args = parser.parse_args(argv)
    names = [n for n, _ in CASES]
    if args.cases is not None:
        chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in names]
        if unknown or not chosen:
            parser.error(f"--cases must name some of {names}, got {args.cases!r}")
        args.cases = chosen
    if not (args.budget_scale > 0 and math.isfinite(args.budget_scale)):
        parser.error(f"--budget-scale must be a positive number, got {args.budget_scale}")
    return args


def run_case(name, budget, deadline, args, cases_dir):
    """Run one case in its own process; return its record (rows kept even when it was stopped)."""
    path = cases_dir / f"{name}.json"
    if path.exists():
        path.unlink()  # ours: written by an earlier run into this folder with --force
    remaining = deadline - time.monotonic()
    if remaining < 15.0:
        return {"name": name, "status": "skipped", "reason": "the total time budget was used up", "rows": []}
    budget = min(budget, remaining - 10.0)
    hard_limit = min(budget + max(30.0, 0.5 * budget), remaining)
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    if args.smoke:  # compile fast, and let a later case reuse an earlier one's programs of the same shapes
        env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
        if args.cache_dir and "JAX_COMPILATION_CACHE_DIR" not in env:
            env["JAX_COMPILATION_CACHE_DIR"] = args.cache_dir
    command = [sys.executable, "-m", "benchmarks.gpu_cases", name, "--out", str(path), "--budget", f"{budget:.1f}",
               "--scale", str(args.budget_scale)] + (["--smoke"] if args.smoke else [])
    print(f"[gpu] {name}: starting (budget {budget:.0f} s, stopped after {hard_limit:.0f} s)", flush=True)
    began = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    stopped = False
    try:
        returncode = proc.wait(timeout=hard_limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        returncode = proc.wait()
        stopped = True
    record = {"name": name, "rows": []}
    if path.exists():
        with open(path) as f:
            record = json.load(f)
    record["process_seconds"] = time.monotonic() - began
    record["returncode"] = returncode
    if stopped:
        record["status"] = "timeout"
        record["error"] = f"stopped at its hard limit of {hard_limit:.0f} s; rows finished before are kept"
    elif record.get("status") in (None, "running"):
        record["status"] = "error"
        record["error"] = f"the case process ended with return code {returncode} before finishing"
    print(f"[gpu] {name}: {record['status']} in {record['process_seconds']:.1f} s", flush=True)
    return record


def probe_families():
    """Which optional families jaxcollapse has, asked of a child process (the parent never starts JAX)."""
    code = ("import json, jaxcollapse as jc; from benchmarks.gpu_cases import FAMILY_CASES; "
            "print(json.dumps({c: hasattr(jc, n) for c, n in FAMILY_CASES.items()}))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return {"families_present": json.loads(done.stdout.strip().splitlines()[-1])}


def family_missing(name, environment):
    """A skipped record if this version of jaxcollapse lacks the case's family, else None."""
    if environment is None:
        try:
            environment = probe_families()
        except Exception as error:  # noqa: BLE001
            return {"name": name, "status": "error", "error": f"could not import jaxcollapse: {error}", "rows": []}
    if environment.get("families_present", {}).get(name):
        return None
    return {"name": name, "status": "skipped", "reason": "not in this version", "rows": []}


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def table(report):
    lines = [f"{'case':<17} {'config':<12} {'chains':>9} {'gens':>5} {'chain-gen/s':>12} {'wall s':>8} "
             f"{'compile s':>9} {'peak GiB':>8}  status"]
    for case in report["cases"]:
        rows = case.get("rows") or [{}]
        for i, row in enumerate(rows):
            peak = row.get("peak_bytes_in_use")
            status = case.get("status", "?") if i == 0 else ""
            if i == 0 and case.get("status") == "skipped":
                status += f": {case.get('reason', '')}"
            lines.append(f"{case['name'] if i == 0 else '':<17} {str(row.get('config', '-')):<12} "
                         f"{fmt(row.get('n_chains'), 'd'):>9} {fmt(row.get('generations_timed'), 'd'):>5} "
                         f"{fmt(row.get('chain_generations_per_second'), '.3g'):>12} {fmt(row.get('wall_seconds'), '.3f'):>8} "
                         f"{fmt(row.get('compile_seconds'), '.1f'):>9} "
                         f"{fmt(None if peak is None else peak / 2**30, '.2f'):>8}  {status}")
    lines.append("")
    for case in report["cases"]:
        if case.get("goal"):
            met = {True: "MET", False: "NOT MET", None: "not judged"}[case.get("goal_met")]
            value = case.get("goal_value")
            lines.append(f"goal {case['name']}: {case['goal']}: {fmt(value, '.3g')} -> {met}")
        if case.get("error"):
            lines.append(f"error {case['name']}: {case['error'][:300]}")
        for extra in ("stopped_by", "errors"):
            if case.get(extra):
                lines.append(f"{extra} {case['name']}: {case[extra]}")
    return "\n".join(lines)


def run_cases(args, report, target, cases_dir, deadline, began):
    """Every chosen case in order; gpu.json is rewritten after each."""
    scale = 1.0 if args.smoke else args.budget_scale
    environment = None
    for name, budget in CASES:
        if args.cases is not None and name not in args.cases:
            continue
        record = family_missing(name, environment) if name in FAMILY_CASES else None
        if record is None:
            record = run_case(name, SMOKE_CASE_BUDGET if args.smoke else budget * scale, deadline, args, cases_dir)
        found = record.pop("environment", None)
        if environment is None and found is not None:
            environment = found
            report.update(device=found.get("device"), versions=found.get("versions"), host=found.get("host"),
                          xla_optimizations_disabled=found.get("xla_optimizations_disabled"))
        report["cases"].append(record)
        report["total_seconds"] = time.monotonic() - began
        write_json(target, report)
    return environment


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.outdir)
    target = out / "gpu.json"
    if target.exists() and not args.force:
        print(f"error: {target} exists; pass --force to replace it, or name another folder", file=sys.stderr)
        return 2
    cases_dir = out / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    scale = 1.0 if args.smoke else args.budget_scale
    total_budget = 10 * SMOKE_CASE_BUDGET if args.smoke else args.total_budget * scale
    deadline = time.monotonic() + total_budget
    began = time.monotonic()
    report = {"benchmark": "jaxcollapse benchmarks/gpu.py", "command": " ".join([sys.executable, "-m", "benchmarks.gpu"]
                                                                                  + list(sys.argv[1:] if argv is None else argv)),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "smoke": args.smoke, "budget_scale": args.budget_scale,
              "total_budget_seconds": total_budget, "device": None, "versions": None, "host": None,
              "cases": []}
    with tempfile.TemporaryDirectory(prefix="jaxcollapse-gpu-smoke-cache-") as cache_dir:
        args.cache_dir = cache_dir if args.smoke else None
        run_cases(args, report, target, cases_dir, deadline, began)
    print()
    device = report.get("device") or {}
    print(f"device: {device.get('kind')} ({device.get('platform')}), versions: {report.get('versions')}")
    print(table(report))
    print(f"total {report['total_seconds']:.1f} s; results in {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
