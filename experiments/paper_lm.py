"""Shumailov et al.'s language-model experiment with n-gram chains on the shipped Python docs.

Runs experiments/paper_lm.toml (both settings: no original data, and a fresh random 10% of the
original data each generation), then draws the paper's figures and writes sample text:

  <out>/figures/lm_perplexity_histograms.png   per-block perplexity of each generation's generated
                                               text under the generation-0 model (log x)
  <out>/figures/lm_heldout_perplexity.png      held-out perplexity per generation, spread across chains
  <out>/figures/lm_support.png                 vocabulary and n-gram support size per generation
  <out>/sample_text.md                         what chain 0 writes from the same real prompts, as
                                               written by the models of generations 0, 1, 7 and 9
  <out>/lm_summary.json                        the figures' numbers

The generation-0 model is the model fitted to the whole training split: every chain's generation
0 here, since every real block prompts once per generation (n_samples = the training split).

Run:  python experiments/paper_lm.py [--out results/paper_lm] [--set run.n_chains=16 ...] [--force]
      python experiments/paper_lm.py --study experiments/paper_lm_transformer.toml --out results/paper_lm_transformer

With the Transformer variant each chain's generation-0 model is its own fit on its real sample.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

import jaxcollapse as jc
from jaxcollapse.plots import language as plots_language
from jaxcollapse.study import run_study

HERE = Path(__file__).resolve().parent
STUDY = HERE / "paper_lm.toml"
SAMPLE_GENERATIONS = (0, 1, 7, 9)   # the models whose text the paper shows
N_PROMPTS = 3
SHOWN_WORDS = 40


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(STUDY), help="the study file (default: paper_lm.toml, the n-gram)")
    ap.add_argument("--out", default=None, help="results folder (default: results/<the study's name>)")
    ap.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    ap.add_argument("--force", action="store_true", help="overwrite an existing results directory")
    args = ap.parse_args(argv)

    out = args.out or f"results/{Path(args.study).stem}"
    outcome = run_study(Path(args.study), out, overrides=args.overrides, force=args.force, show_progress=False,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    runs = {_label(plan): outcome.results[plan.label] for plan in outcome.plans}
    figures = Path(outcome.path) / "figures"
    figures.mkdir(exist_ok=True)
    plots_language.perplexity_histograms(runs, figures / "lm_perplexity_histograms.png")
    plots_language.heldout_perplexity(runs, figures / "lm_heldout_perplexity.png")
    plots_language.support(runs, figures / "lm_support.png")
    (Path(outcome.path) / "sample_text.md").write_text(sample_text(outcome.plans))
    summary = {label: _summary(r) for label, r in runs.items()}
    (Path(outcome.path) / "lm_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({label: {k: v for k, v in s.items() if k != "per_generation"} for label, s in summary.items()},
                     indent=1))
    print(f"figures, sample_text.md and lm_summary.json in {outcome.path}/")
    return 0


def _label(plan) -> str:
    regime = plan.config["regime"]
    if regime["kind"] == "fresh_real" and regime["fraction"] == 0:
        return "replace"  # paper_lm.toml's no-original-data setting: a real share of 0 is replace, bit for bit
    return regime["kind"] + (f"({regime['fraction']})" if "fraction" in regime else "")


def sample_text(plans) -> str:
    """Chain 0 of each setting replayed with its generated text kept at the chosen generations."""
    lines = ["# What the chains write", "",
             "Chain 0 of each setting, replayed from its key (`jc.simulate(chain_key, ..., n_chains=1)` gives the "
             "same chain), with the text each model writes stored. Each block starts from the first tokens of a "
             "real block (its prompt: the first word for a bigram, which remembers one word; the first "
             "prompt_length tokens for the Transformer); words outside the vocabulary are <unk>. Generation g's "
             "text is what the model of generation g writes, the training text of generation g + 1.", ""]
    text = None
    for plan in plans:
        fam, run = plan.family, plan.config["run"]
        if text is None:
            text = jc.datasets.load_text(fam.tokenizer, fam.block, vocab_size=fam.vocab_size,
                                         heldout_fraction=plan.config["source"].get("heldout_fraction", 0.1),
                                         seed=plan.config["source"].get("split_seed", 0))
        wanted = [g for g in SAMPLE_GENERATIONS if g < run["n_generations"]]
        chain_key = plan.program.chain_keys(jax.random.key(run["seed"]))[0]
        replay = jc.simulate(chain_key, fam, plan.source, n_chains=1, n_generations=max(wanted) + 1,
                             n_samples=run["n_samples"], regime=plan.program.stage, record=["heldout_perplexity"],
                             snapshot_at=[g + 1 for g in wanted])
        written = np.asarray(replay.snapshots[0])                     # [len(wanted), n_samples, block]
        lines += [f"## {_label(plan)}", ""]
        for i in range(N_PROMPTS):
            lines += [f"**Real block {i}:** {text.decode(text.train[i][:SHOWN_WORDS])} ...", ""]
            for j, g in enumerate(wanted):
                lines += [f"- *generation {g}:* {text.decode(written[j, i][:SHOWN_WORDS])} ...", ""]
    return "\n".join(lines) + "\n"


def _summary(results) -> dict:
    m = results.metrics
    heldout = np.asarray(m["heldout_perplexity"], float)
    generated = np.asarray(m["generated_perplexity"], float)
    per_generation = []
    for g in range(heldout.shape[1]):
        v = generated[:, g].ravel()
        per_generation.append({
            "generation": g,
            "heldout_perplexity_median": float(np.median(heldout[:, g])),
            "heldout_perplexity_p10_p90": [float(x) for x in np.percentile(heldout[:, g], (10, 90))],
            "generated_perplexity_median": float(np.median(v)),
            "generated_perplexity_p5_p95": [float(x) for x in np.percentile(v, (5, 95))],
            "vocabulary_size_median": float(np.median(m["vocabulary_size"][:, g])),
            "ngram_support_size_median": float(np.median(m["ngram_support_size"][:, g])),
        })
    first, last = per_generation[0], per_generation[-1]
    return {"n_chains": int(heldout.shape[0]), "wall_seconds": results.manifest["wall_seconds"],
            "heldout_perplexity_median_first_last": [first["heldout_perplexity_median"],
                                                     last["heldout_perplexity_median"]],
            "generated_perplexity_median_first_last": [first["generated_perplexity_median"],
                                                       last["generated_perplexity_median"]],
            "per_generation": per_generation}


if __name__ == "__main__":
    sys.exit(main())
