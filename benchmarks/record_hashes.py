"""Hashes of every built-in study's records at small sizes: a refactor that keeps them keeps the numbers bit for bit.

Each study in experiments/*.toml is run through the command line (`python -m jaxcollapse.cli run`, in a subprocess,
so only the CLI is relied on), then every array of every .npz it wrote (metrics, params, fit_info, snapshots, in
each run folder of a sweep too) is hashed: sha256 over the array's name, dtype, shape and raw bytes (not the file's
bytes: zip timestamps differ). Prints, and writes with --json, {study: {file: {array: sha256}}}.

    cd /tmp && PYTHONPATH=/path/to/checkout python /path/to/record_hashes.py --studies-dir /path/to/checkout/experiments \
        --json before.json
    ... then with the refactored checkout: --json after.json --against before.json   (exit 1: something differs)

Run it outside a checkout (as above: cd /tmp): `python -m` puts the working directory first on sys.path. The
subprocesses inherit the environment (PYTHONPATH, JAXCOLLAPSE_NATIVE, ...); the compilation cache only saves time.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# 36 chains: a multiple of every built-in [regime] grid (quality_phase 6 x 6, quality_feedback 6, ..._gmm 4, ...);
# 6 generations in chunks of 4: two compiled chunks, the second one short
SMALL = {"run.n_chains": 36, "run.n_generations": 6, "run.chunk_size": 4}
# neural and text families: tiny, a few seconds each
TINY = {"run.n_chains": 2, "run.n_generations": 2, "run.chunk_size": 1}
BY_FAMILY = {
    "vae": {**TINY, "run.n_samples": 128, "family.n_steps": 20},
    "transformer": {**TINY, "run.n_samples": 16, "family.epochs": 1, "family.batch_size": 8, "family.n_eval": 4},
    "ngram": {**TINY, "run.n_samples": 64, "family.n_eval": 8},
}


def overrides(study: dict) -> dict:
    """The --set values for a study: small sizes, snapshots kept where the study keeps them, swept keys left alone."""
    sizes = dict(BY_FAMILY.get(study.get("family", {}).get("name"), SMALL))
    if "snapshot_at" in study.get("run", {}):
        g = sizes["run.n_generations"]
        sizes["run.snapshot_at"] = sorted({0, g // 2, g})
    swept = set(study.get("sweep", {}))
    return {key: value for key, value in sizes.items() if key not in swept}


def hash_array(name: str, array: np.ndarray) -> str:
    digest = hashlib.sha256()
    for part in (name, str(array.dtype), str(array.shape)):
        digest.update(part.encode() + b"\0")
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def hash_records(folder: Path) -> dict:
    """{file relative to folder: {array: sha256}} for every .npz under folder."""
    out = {}
    for path in sorted(folder.rglob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            out[path.relative_to(folder).as_posix()] = {name: hash_array(name, npz[name]) for name in sorted(npz.files)}
    return out


def run_study(python: str, toml: Path, workdir: Path) -> tuple[dict, float]:
    sets = [f"--set={key}={json.dumps(value)}" for key, value in overrides(tomllib.loads(toml.read_text())).items()]
    out = workdir / toml.stem
    command = [python, "-m", "jaxcollapse.cli", "run", str(toml), "--out", str(out), "--no-plots", "--no-progress", *sets]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)  # cwd: not a checkout (see above)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {' '.join(command)}\n{done.stderr.strip()[-2000:]}")
    return hash_records(out), seconds


def differences(before: dict, after: dict) -> list[str]:
    """One line per file whose arrays differ, in the studies both runs hashed."""
    lines = []
    for study in sorted(before.keys() & after.keys()):
        for file in sorted(before[study].keys() | after[study].keys()):
            old, new = before[study].get(file, {}), after[study].get(file, {})
            changed = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
            if changed:
                lines.append(f"{study}/{file}: {', '.join(changed)}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies-dir", type=Path, default=REPO / "experiments", help="default: <repo>/experiments")
    parser.add_argument("--json", type=Path, help="write the hashes here")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the CLI (default: this one)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these studies (file stems)")
    parser.add_argument("--against", type=Path, metavar="JSON",
                        help="an earlier run's --json: list what differs (the studies both ran) and exit 1 if anything does")
    args = parser.parse_args(argv)
    studies = sorted(args.studies_dir.resolve().glob("*.toml"))
    if args.only:
        missing = set(args.only) - {p.stem for p in studies}
        if missing:
            parser.error(f"no such studies in {args.studies_dir}: {', '.join(sorted(missing))}")
        studies = [p for p in studies if p.stem in args.only]
    hashes, failed = {}, []
    with tempfile.TemporaryDirectory(prefix="record_hashes-") as tmp:
        workdir = Path(tmp)
        probe = "import sys, jax, jaxcollapse; print(jaxcollapse.__file__, 'jax', jax.__version__, sys.version.split()[0])"
        found = subprocess.run([args.python, "-c", probe], cwd=workdir, capture_output=True, text=True, check=True).stdout
        native = os.environ.get("JAXCOLLAPSE_NATIVE", "auto")
        print(f"# package: {found.strip()}, JAXCOLLAPSE_NATIVE={native}", file=sys.stderr, flush=True)
        total = time.perf_counter()
        for toml in studies:
            try:
                hashes[toml.stem], seconds = run_study(args.python, toml, workdir)
                print(f"# {toml.stem}: {seconds:.1f} s, {len(hashes[toml.stem])} files", file=sys.stderr, flush=True)
            except RuntimeError as err:
                failed.append(toml.stem)
                print(f"# {toml.stem}: FAILED {err}", file=sys.stderr, flush=True)
        print(f"# total {time.perf_counter() - total:.1f} s", file=sys.stderr)
    text = json.dumps(hashes, indent=1, sort_keys=True)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
    changed = differences(json.loads(args.against.read_text()), hashes) if args.against else []
    if args.against:
        print("\n".join(["# DIFFERS " + line for line in changed] or [f"# every array as in {args.against}"]), file=sys.stderr)
    return 1 if failed or changed else 0


if __name__ == "__main__":
    sys.exit(main())
