"""The `jaxcollapse` command.

    jaxcollapse run [STUDY] [--out DIR] [--set section.key=value ...] [--resume] [--force]
    jaxcollapse list                    the built-in studies in experiments/
    jaxcollapse info                    devices and versions
    jaxcollapse plot DIR                (re)draw a results directory's figures
    jaxcollapse summary DIR             the short summary printed at the end of a run

STUDY is a TOML file or the name of a built-in study (default: dice).
"""
from __future__ import annotations

import argparse
import sys

DEFAULT_STUDY = "dice"


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options of `run`; a new flag (e.g. --distributed) is one more add_argument here."""
    parser.add_argument("study", nargs="?", default=DEFAULT_STUDY,
                        help=f"a study TOML file or a built-in study name (default: {DEFAULT_STUDY})")
    parser.add_argument("--out", metavar="DIR", help="results directory (default: results/<study name>)")
    parser.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override a config value, e.g. --set run.n_chains=100 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    parser.add_argument("--force", action="store_true", help="overwrite an existing results directory")
    parser.add_argument("--chunk-size", type=int, metavar="N",
                        help="generations per compiled chunk; a checkpoint is written after each")
    parser.add_argument("--no-plots", action="store_true", help="do not draw figures at the end")
    parser.add_argument("--devices", type=int, metavar="N",
                        help="shard the chains over the first N devices (default: every device, of every process)")
    parser.add_argument("--distributed", action="store_true",
                        help="join a multi-process run (jax.distributed.initialize): coordinator, process count and "
                             "id from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID or the cluster "
                             "(SLURM, Open MPI); every process runs the same command, process 0 writes")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show the progress bar")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never show the progress bar (default: only on a terminal)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxcollapse", description="Model-collapse studies as compiled JAX programs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run_options(commands.add_parser("run", help="run a study", description="Run a study config."))
    commands.add_parser("list", help="list the built-in studies")
    commands.add_parser("info", help="show devices and versions")
    plot = commands.add_parser("plot", help="draw the figures of a results directory")
    plot.add_argument("results", metavar="DIR")
    show = commands.add_parser("summary", help="summarise a results directory")
    show.add_argument("results", metavar="DIR")
    return parser


def _log(message: str) -> None:
    sys.stdout.flush()  # keep the order of both streams when they share a pipe
    print(message, file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    if args.distributed:  # before anything touches a device
        from jaxcollapse import sharding

        sharding.initialize_distributed()
    from jaxcollapse import config, study

    path = config.find_study(args.study)
    outcome = study.run_study(path, args.out, overrides=args.overrides, resume=args.resume, force=args.force,
                              chunk_size=args.chunk_size, show_progress=args.progress, plots=not args.no_plots,
                              log=_log, devices=args.devices)
    for label in outcome.skipped:
        _log(f"{label}: already complete, skipped")
    for label, results in outcome.results.items():
        print(f"\n== {label}: {results.path}" if len(outcome.results) > 1 else f"\n== {label}")
        print(study.summary(results))
    figures = "" if args.no_plots else ", figures/"
    print(f"\nresults: {outcome.path}/ (metrics.npz, config.json, manifest.json{figures}); "
          f"load with jaxcollapse.load({str(outcome.path)!r})")
    return 0


def cmd_list(args) -> int:
    from jaxcollapse import config

    root = config.builtin_dir()
    studies = sorted(root.glob("*.toml"))
    if not studies:
        print(f"no built-in studies in {root}")
        return 0
    width = max(len(p.stem) for p in studies)
    for path in studies:
        try:
            description = config.read(path).get("description", "")
        except config.ConfigError as err:
            description = f"(unreadable: {err})"
        print(f"{path.stem:<{width}}  {description}")
    print(f"\nrun one with: jaxcollapse run {root.name}/<name>.toml   (or: jaxcollapse run <name>)")
    return 0


def cmd_info(args) -> int:
    from jaxcollapse import config, study

    env = study.environment()
    for key in ("jaxcollapse", "jax", "jaxlib", "numpy", "python", "platform", "backend", "x64"):
        print(f"{key:<12} {env[key]}")
    print(f"{'devices':<12} {len(env['devices'])}: {', '.join(env['devices'])}")
    print(f"{'families':<12} {', '.join(config.available_families())}")
    print(f"{'studies':<12} {config.builtin_dir()}")
    return 0


def cmd_plot(args) -> int:
    from jaxcollapse import plots

    written = plots.plot(args.results)
    for path in written:
        print(path)
    return 0


def cmd_summary(args) -> int:
    from jaxcollapse import io, study

    loaded = io.load(args.results)
    runs = loaded.items() if isinstance(loaded, io.Sweep) else [(loaded.name, loaded)]
    for label, results in runs:
        print(f"== {label}")
        print(study.summary(results))
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "info": cmd_info, "plot": cmd_plot, "summary": cmd_summary}


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from jaxcollapse.config import ConfigError

    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"jaxcollapse: config error: {err}", file=sys.stderr)
        return 2
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"jaxcollapse: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\njaxcollapse: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
