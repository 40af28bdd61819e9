"""The ``mtnas`` command line: each subcommand parses, calls the library, prints.

Exit codes: 0 success, 2 user error (one line on stderr; ``--debug`` adds the traceback), 1 bug.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtnas import __version__
from mtnas.errors import MtnasError
from mtnas.registry import Registry

__all__ = ["COMMANDS", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: one-line help, its arguments, and the function that runs it."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: Registry[Command] = Registry("command")


# --- shared argument groups ------------------------------------------------------------------


def _space_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="a built-in search space name (see 'mtnas spaces') or a YAML path")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the space's seed)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# --- commands ----------------------------------------------------------------------------------


def _spaces(args: argparse.Namespace) -> None:
    from mtnas.space import list_spaces
    from mtnas.text import format_table

    print(format_table(["space", "description"], [[name, desc] for name, desc in list_spaces()]))


def _train_args(p: argparse.ArgumentParser) -> None:
    _space_arg(p)
    p.add_argument("--tree", default="all-shared", help="all-shared, independent, or an arch.json path")
    p.add_argument("--epochs", type=int, default=None, help="override the space's training epochs")
    _run_args(p)


def _train(args: argparse.Namespace) -> None:
    from mtnas.fixed import run_train

    report = run_train(
        args.space, args.tree, seed=args.seed, device=args.device, epochs=args.epochs, progress=not args.quiet
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())


def _baselines_args(p: argparse.ArgumentParser) -> None:
    _space_arg(p)
    p.add_argument("--no-cache", action="store_true", help="retrain even when cached results exist")
    _run_args(p)


def _baselines(args: argparse.Namespace) -> None:
    from mtnas.fixed import run_baselines

    report = run_baselines(
        args.space, seed=args.seed, device=args.device, use_cache=not args.no_cache, progress=not args.quiet
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="where the demo writes its files")
    p.add_argument("--epochs", type=int, default=None, help="override the training epochs (smaller: faster)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _demo(args: argparse.Namespace) -> None:
    from mtnas.demo import run_demo

    run_demo(out=Path(args.out), device=args.device, epochs=args.epochs, progress=not args.quiet)


COMMANDS.add("spaces", Command("list the built-in search spaces", lambda p: None, _spaces))
COMMANDS.add("train", Command("train one fixed tree: per-task metrics, cost, delta-m", _train_args, _train))
COMMANDS.add("baselines", Command("train single-task networks and the all-shared tree (cached)", _baselines_args, _baselines))
COMMANDS.add("demo", Command("the whole path on a small budget, minutes on a CPU", _demo_args, _demo))


# --- entry point ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtnas", description="Multi-task neural architecture search: find which layers tasks should share."
    )
    parser.add_argument("--version", action="version", version=f"mtnas {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS.names():
        cmd = COMMANDS.get(name)
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except MtnasError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"mtnas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
