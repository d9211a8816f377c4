"""The `jaxcollapse` command.

    jaxcollapse run [STUDY] [--out DIR] [--set section.key=value ...] [--resume] [--force] [--no-cache]
    jaxcollapse list                    the built-in studies in experiments/
    jaxcollapse info                    devices, versions, the compilation cache
    jaxcollapse plot DIR                (re)draw a results directory's figures
    jaxcollapse summary DIR             the short summary printed at the end of a run
    jaxcollapse export DIR [--format csv|parquet] [--to FILE]   the tidy table as a file
    jaxcollapse --version

STUDY is a TOML file or the name of a built-in study (default: dice). Every error is one line on
stderr (exit 2: a config error; 1: anything else), never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from pathlib import Path

import jax

import jaxcollapse
from jaxcollapse import GMM, compile_cache, settings, sharding, study
from jaxcollapse.engine import program
from jaxcollapse.native import em as native_em
from jaxcollapse.store import runs as io
from jaxcollapse.store.folder import ResultsFolder
from jaxcollapse.study import config
from jaxcollapse.study import plugins as plugin_files
from jaxcollapse.study.config import ConfigError

DEFAULT_STUDY = "dice"


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options of `run`; a new flag (e.g. --distributed) is one more add_argument here."""
    parser.add_argument("study", nargs="?", default=DEFAULT_STUDY,
                        help=f"a study TOML file or a built-in study name (default: {DEFAULT_STUDY})")
    parser.add_argument("--out", metavar="DIR", help="results directory (default: results/<study name>)")
    parser.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override a config value, e.g. --set run.n_chains=100 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    parser.add_argument("--allow-other-path", action="store_true",
                        help="with --resume: continue a checkpoint written on another execution path (EM backend, "
                             "schedule, sums, jax version; refused by default: float32 numbers differ between paths)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing results directory")
    parser.add_argument("--chunk-size", type=int, metavar="N",
                        help="generations per compiled chunk; a checkpoint is written after each")
    parser.add_argument("--no-plots", action="store_true", help="do not draw figures at the end")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not use the persistent compilation cache (default: on, in ~/.cache/jaxcollapse/jax "
                             "or $XDG_CACHE_HOME/jaxcollapse/jax; also JAXCOLLAPSE_NO_CACHE=1)")
    parser.add_argument("--devices", type=int, metavar="N",
                        help="shard the chains over the first N devices (default: every device, of every process)")
    _add_cpu_devices(parser)
    parser.add_argument("--distributed", action="store_true",
                        help="join a multi-process run (jax.distributed.initialize): coordinator, process count and "
                             "id from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID or the cluster "
                             "(SLURM, Open MPI); every process runs the same command, process 0 writes")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show the progress bar")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never show the progress bar (default: only on a terminal)")


class _Version(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the versions and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"jaxcollapse {jaxcollapse.__version__} (jax {jax.__version__}, Python {platform.python_version()})")
        parser.exit()


def _cpu_device_count(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed values are an integer >= 1 or 'auto' (one per core)")
    return count


def _add_cpu_devices(parser) -> None:
    parser.add_argument("--cpu-devices", type=_cpu_device_count, metavar="N|auto",
                        help="split the CPU into N JAX devices (auto: one per core) and shard the chains over them; "
                             "one XLA:CPU device keeps about one core busy on small per-chain programs (the "
                             "paper's GMM: 1.2-2.1x on 2 cores); same chains, see README")


def _use_cpu_devices(args) -> None:
    """Before anything touches a device."""
    if getattr(args, "cpu_devices", None):
        try:
            jax.config.update("jax_num_cpu_devices", args.cpu_devices)
        except RuntimeError:  # JAX already started in this process (a Python session calling main)
            if jax.local_device_count("cpu") != args.cpu_devices:
                raise ValueError(f"--cpu-devices {args.cpu_devices}: JAX has already started here with "
                                 f"{jax.local_device_count('cpu')} CPU device(s); give it on the command line")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxcollapse", description="Model-collapse studies as compiled JAX programs.")
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run_options(commands.add_parser("run", help="run a study", description="Run a study config."))
    commands.add_parser("list", help="list the built-in studies")
    _add_cpu_devices(commands.add_parser("info", help="show devices, versions and the compilation cache"))
    plot = commands.add_parser("plot", help="draw the figures of a results directory")
    plot.add_argument("results", metavar="DIR")
    show = commands.add_parser("summary", help="summarise a results directory")
    show.add_argument("results", metavar="DIR")
    for command in (plot, show):
        command.add_argument("--plugin", metavar="FILE", action="append", default=[], dest="plugins",
                             help="import this plugin file first (a run's own family, metric or rule; repeatable); "
                                  "a plugin is code you choose to run")
    export = commands.add_parser("export", help="write the tidy table (chain, generation, metrics) as csv or parquet",
                                 description="Write a results directory's tidy table: one row per chain and "
                                             "generation (and run, for a sweep), one column per metric.")
    export.add_argument("results", metavar="DIR")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv",
                        help="csv (default) or parquet (needs pyarrow)")
    export.add_argument("--to", metavar="FILE", help="the file to write (default: DIR/tidy.<format>)")
    return parser


def _log(message: str) -> None:
    sys.stdout.flush()  # keep the order of both streams when they share a pipe
    print(message, file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    _use_cpu_devices(args)
    if args.distributed:  # before anything touches a device
        sharding.initialize_distributed()
    compile_cache.enable(disabled=args.no_cache)
    path = config.find_study(args.study)
    if path.is_dir():
        studies = ", ".join(p.name for p in sorted(path.glob("*.toml"))) or "none"
        raise config.ConfigError(f"study {args.study!r} is a folder, not a TOML file; the studies in it: {studies}")
    outcome = study.run_study(path, args.out, overrides=args.overrides, resume=args.resume, force=args.force,
                              chunk_size=args.chunk_size, show_progress=args.progress, plots=not args.no_plots,
                              log=_log, devices=args.devices, allow_other_path=args.allow_other_path)
    for label in outcome.skipped:
        _log(f"{label}: already complete, skipped")
    for label, results in outcome.results.items():
        print(f"\n== {label}: {results.path}" if len(outcome.results) > 1 else f"\n== {label}")
        print(study.summary(results))
    print(f"\nresults: {outcome.path}/; load with jaxcollapse.load({str(outcome.path)!r})")
    print(_files_written(outcome.path, outcome.written))
    return 0


def _files_written(root, written) -> str:
    """Every file written, relative to the results folder, grouped by subfolder."""
    if not written:
        return "files written: none"
    groups: dict[str, list[str]] = {}
    for path in written:
        rel = Path(path).relative_to(root)
        groups.setdefault(rel.parent.as_posix(), []).append(rel.name)
    lines = [f"files written ({len(written)}):"]
    for folder, names in groups.items():
        lines.append(f"  {'' if folder == '.' else folder + '/: '}{', '.join(names)}")
    return "\n".join(lines)


def cmd_list(args) -> int:
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
    _use_cpu_devices(args)
    env = study.environment()
    for key in ("jaxcollapse", "jax", "jaxlib", "numpy", "python", "platform", "backend", "x64"):
        print(f"{key:<12} {env[key]}")
    print(f"{'devices':<12} {len(env['devices'])}: {', '.join(env['devices'])}")
    print(f"{'families':<12} {', '.join(config.available_families())}")
    print(f"{'studies':<12} {config.builtin_dir()}")
    print(f"{'cache':<12} compiled programs: {compile_cache.describe()}")
    for line in _execution_lines():
        print(line)
    return 0


def _execution_lines() -> list[str]:
    """The execution settings, where each came from, and what a GMM (K = 2, d = 2) resolves them to here."""
    try:
        requested = settings.current()
        resolved = {"em_backend": native_em.resolve(2, 2, GMM(2, dim=2).point_dtype),
                    "schedule": program.resolve_schedule(GMM(2, dim=2)), "sums": settings.resolve_sums()}
    except (ValueError, RuntimeError) as err:
        return [f"{'execution':<12} error: {err}"]
    return [f"{name:<12} {getattr(requested, name)} ({settings.source(name)}): a GMM runs {resolved[name]}"
            for name in settings.CHOICES]


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return path


def _import_plugins(files) -> None:
    """The --plugin files, imported as a study's plugins are (what the results' config names is not run unasked)."""
    for file in files:
        try:
            plugin_files.import_file(plugin_files.resolve(file, None))
        except ValueError as err:
            raise ConfigError(f"--plugin: {err}") from None


def cmd_plot(args) -> int:
    _import_plugins(args.plugins)
    path = _existing(args.results)
    written = study.plot(path)
    folder = ResultsFolder.existing(path)
    if folder is not None:
        folder.adopt(written)  # figures in the tool's folder are the tool's: --force may replace them
    for file in written:
        print(file)
    return 0


def cmd_summary(args) -> int:
    _import_plugins(args.plugins)
    loaded = io.load(_existing(args.results))
    runs = loaded.items() if isinstance(loaded, io.Sweep) else [(loaded.name, loaded)]
    for label, results in runs:
        print(f"== {label}")
        print(study.summary(results))
    return 0


def cmd_export(args) -> int:
    written = io.load(_existing(args.results)).export(args.to, args.format)
    print(written)
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "info": cmd_info, "plot": cmd_plot, "summary": cmd_summary,
            "export": cmd_export}


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logger = logging.getLogger("jaxcollapse")
    level, shown = logger.level, _show_log(logger)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        return _fail(f"config error: {err}", 2)
    except KeyboardInterrupt:
        print("\njaxcollapse: interrupted; continue with --resume", file=sys.stderr)
        return 130
    except ImportError as err:
        return _fail(_missing_package(err), 1)
    except OSError as err:  # PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError, ...
        return _fail(_os_message(err), 1)
    except ValueError as err:
        return _fail(f"error: {err}", 1)
    finally:
        logger.removeHandler(shown)
        logger.setLevel(level)


def _show_log(logger: logging.Logger) -> logging.Handler:
    """jaxcollapse's log (quiet in the library) on stderr while a command runs: the execution path a run resolved."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("jaxcollapse: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def _fail(message: str, code: int) -> int:
    print(f"jaxcollapse: {' '.join(message.split())}", file=sys.stderr)  # always one line
    return code


def _os_message(err: OSError) -> str:
    if err.filename is None or str(err.filename) in str(err.args[-1]):
        return f"error: {err}"
    what = err.strerror or type(err).__name__
    return f"error: {what}: {err.filename}"


# import name -> the package that provides it
_PACKAGES = {"sklearn": "scikit-learn", "PIL": "pillow", "yaml": "pyyaml"}


def _missing_package(err: ImportError) -> str:
    name = getattr(err, "name", None)
    if name and type(err) is ModuleNotFoundError:
        top = name.split(".")[0]
        return f"error: this needs the Python package {_PACKAGES.get(top, top)!r}, which is not installed: " \
               f"pip install {_PACKAGES.get(top, top)}"
    return f"error: {err}"


if __name__ == "__main__":
    sys.exit(main())
