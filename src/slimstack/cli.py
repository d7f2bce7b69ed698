"""The ``slimstack`` command line: a thin shell over the Python API.

Each subcommand parses its arguments, calls one public function and returns an exit code. User
errors (:class:`SlimstackError`) print one or two lines and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# Before transformers loads: never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="slimstack",
        description="Make trained models slimmer and stronger together, measured on your CPU.",
    )
    p.add_argument("--version", action="version", version=f"slimstack {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="the end-to-end showcase on built-in data and models")
    demo.add_argument("-o", "--out", default=None, help="also write the results as JSON into this folder")
    demo.add_argument("--threads", type=int, default=2, help="intra-op threads for timing (default 2)")

    m = sub.add_parser("measure", help="measure a saved model's quality, size and speed on a data set")
    m.add_argument("model", help="a folder written by ss.save, an .onnx or a .skops file")
    m.add_argument("--data", required=True, help="a built-in data set name or a data file")
    m.add_argument("--split", default="test", help="which split to measure on (default: test)")
    m.add_argument("--target", default=None, help="target column of a data file")
    m.add_argument("--batch-size", type=int, default=256)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--runs", type=int, default=20)
    m.add_argument("--json", action="store_true", help="print the measurement as JSON instead of a table")
    m.add_argument("--trusted", action="store_true", help="allow pickle-based model files (runs their code)")
    v = sub.add_parser("validate", help="check a recipe strictly without running it")
    v.add_argument("recipe", help="a YAML recipe")

    r = sub.add_parser("run", help="run a recipe: artifacts, report.json and report.html in OUT")
    r.add_argument("recipe", help="a YAML recipe")
    r.add_argument("-o", "--out", required=True, help="output folder (re-running resumes after the last finished step)")
    r.add_argument("--force", action="store_true",
                   help="overwrite files at slimstack's output paths in OUT that slimstack did not write")

    o = sub.add_parser("optimize", help="accuracy-aware search over the recipe's search space (resumable)")
    o.add_argument("recipe", help="a YAML recipe with a search: section")
    o.add_argument("-o", "--out", required=True, help="output folder (the study is stored there unless --storage)")
    o.add_argument("--storage", default=None, help="an Optuna storage URL to share one study between machines")
    o.add_argument("--trials", type=int, default=None, help="total finished trials wanted (default: the recipe's)")
    o.add_argument("--force", action="store_true",
                   help="overwrite files at slimstack's output paths in OUT that slimstack did not write")
    return p


def _cmd_validate(args: argparse.Namespace) -> int:
    from .recipe import validate_recipe

    recipe = validate_recipe(args.recipe)
    kinds = " -> ".join(k for k, _ in recipe.step_list()) or "(search only)"
    print(f"{args.recipe}: valid recipe {recipe.name!r}: {kinds}; objective {recipe.objective}, "
          f"tolerance {recipe.tolerance:.2%}")
    return 0


def _console():
    from rich.console import Console

    return Console(width=max(Console().width, 150))


def _cmd_run(args: argparse.Namespace) -> int:
    from .recipe import run_recipe, validate_recipe

    run_recipe(validate_recipe(args.recipe), args.out, console=_console(), force=args.force)
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    from .recipe import load_recipe, optimize_recipe

    optimize_recipe(load_recipe(args.recipe), args.out, storage=args.storage, trials=args.trials, console=_console(),
                    force=args.force)
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    from . import datasets, io, measure

    model = io.load(args.model, trusted=args.trusted)
    data = datasets.load(args.data, split=args.split, target=args.target)
    if data.X is not None and data.X.ndim > 2 and not _is_torch(model):
        data = data.flat()
    result = measure(model, data, batch_size=args.batch_size, threads=args.threads, runs=args.runs,
                     name=os.path.basename(os.path.normpath(args.model)))
    print(result.to_json() if args.json else result.table())
    return 0


def _is_torch(model) -> bool:
    import torch

    return isinstance(model, torch.nn.Module)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, threads=args.threads)
    return 0


COMMANDS = {"measure": _cmd_measure, "demo": _cmd_demo, "validate": _cmd_validate, "run": _cmd_run,
            "optimize": _cmd_optimize}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from .errors import SlimstackError

    try:
        return COMMANDS[args.command](args)
    except SlimstackError as exc:
        if args.debug:
            raise
        print(f"slimstack {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
