"""Simulation next to formula: for every run of a results directory, each metric the family has a
closed form for (its study knowledge's theory_curves), the chains' mean and its standard error beside the formula.

    python experiments/theory_check.py results/regression [--generations 0 1 10 50]

z = |mean - formula| / standard error; a correct engine gives z < 4 nearly always (with few chains
and heavy tails the standard error itself is rough; for a ratio to the run's own generation-0 mean
it leaves out the denominator's noise). Curves labelled "limit" are printed as one value, untested. Works for any family whose
study knowledge has theory_curves.
"""
from __future__ import annotations

import argparse

import numpy as np

import jaxcollapse as jc
from jaxcollapse.study import config as config_lib
from jaxcollapse.study.knowledge import knowledge_for


def table(results, generations=None) -> list[str]:
    config = results.config
    family = config_lib.make_family(config["family"])
    n_gen = results.n_generations
    gens = sorted({0, 1, n_gen // 10, n_gen // 2, n_gen}) if generations is None else [g for g in generations if g <= n_gen]
    lines = []
    for metric, values in results.metrics.items():
        values = np.asarray(values, np.float64)
        if values.ndim != 2:
            continue
        for curve, label in knowledge_for(family).theory_curves(family, config, metric, np.arange(n_gen + 1)):
            curve = np.broadcast_to(np.asarray(curve, np.float64), (n_gen + 1,))
            if "limit" in label:  # a limit is a reference, not a test
                lines.append(f"  {metric}: {label} = {curve[-1]:.5g}")
                continue
            lines.append(f"  {metric} vs {label}")
            lines.append(f"    {'generation':>10} {'simulation':>12} {'+- s.e.':>10} {'formula':>12} {'z':>6}")
            for g in gens:
                column = values[:, g][np.isfinite(values[:, g])]
                mean, se = column.mean(), column.std(ddof=1) / np.sqrt(column.size)
                z = abs(mean - curve[g]) / se if se > 0 else float("nan")
                lines.append(f"    {g:>10} {mean:>12.5g} {se:>10.2g} {curve[g]:>12.5g} {z:>6.2f}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a results directory written by `jaxcollapse run`")
    parser.add_argument("--generations", type=int, nargs="*", help="generations to show (default: a few)")
    args = parser.parse_args(argv)
    loaded = jc.load(args.results)
    runs = loaded.items() if isinstance(loaded, dict) else [(loaded.name, loaded)]
    for name, results in runs:
        lines = table(results, args.generations)
        print(f"== {name}: {results.n_chains} chains" + ("" if lines else " (no closed form applies)"))
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
