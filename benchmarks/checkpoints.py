"""What checkpoints cost: the dice study (4,000 chains x 2,000 generations) with --chunk-size 10 vs 2000.

A checkpoint is written after every chunk; it must cost O(chunk), not O(history), so that small
chunks (frequent checkpoints) cost little more than one piece. Goal: chunk 10 <= 1.5x chunk 2000.

Each chunk size runs `jaxcollapse run dice` in this process (study.run_study, no figures, no
progress bar) into a fresh temporary folder: once to compile, then --repeats times timed,
alternating between the chunk sizes; the best time is reported, with the bytes written.

    python benchmarks/checkpoints.py [--chains 4000] [--generations 2000] [--chunks 10 2000] [--repeats 3]

The same script runs against an older checkout (PYTHONPATH=that checkout): run_study's arguments
are unchanged.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def _run(out: Path, chains: int, generations: int, chunk: int) -> float:
    from jaxcollapse import study
    from jaxcollapse.study import config

    settings = [f"run.n_chains={chains}", f"run.n_generations={generations}", "run.snapshot_at=[0,10,100,1000]"]
    began = time.perf_counter()
    study.run_study(config.find_study("dice"), out, overrides=settings, chunk_size=chunk, show_progress=False,
                    plots=False)
    return time.perf_counter() - began


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4000)
    parser.add_argument("--generations", type=int, default=2000)
    parser.add_argument("--chunks", type=int, nargs="+", default=[10, 2000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} cores; dice {args.chains} chains x "
          f"{args.generations} generations, 100 rolls each")
    root = Path(tempfile.mkdtemp(prefix="jc-checkpoints-"))
    try:
        first, best, size = {}, {}, {}
        for chunk in args.chunks:  # compile
            first[chunk] = _run(root / f"warm-{chunk}", args.chains, args.generations, chunk)
            size[chunk] = _bytes(root / f"warm-{chunk}")
            shutil.rmtree(root / f"warm-{chunk}")
        for repeat in range(args.repeats):
            for chunk in args.chunks:
                out = root / f"run-{chunk}-{repeat}"
                seconds = _run(out, args.chains, args.generations, chunk)
                best[chunk] = min(best.get(chunk, float("inf")), seconds)
                shutil.rmtree(out)
        base = best[max(args.chunks)]
        print(f"{'chunk size':>10} {'checkpoints':>11} {'first run (s)':>14} {'best of ' + str(args.repeats) + ' (s)':>14} "
              f"{'/ one piece':>11} {'results (MB)':>12}")
        for chunk in args.chunks:
            print(f"{chunk:>10} {-(-args.generations // chunk) + 1:>11} {first[chunk]:>14.2f} {best[chunk]:>14.2f} "
                  f"{best[chunk] / base:>11.2f} {size[chunk] / 1e6:>12.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
