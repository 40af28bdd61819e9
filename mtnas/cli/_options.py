"""Options shared by several commands, each declared once.

A command lists the options it takes by name (``OPTIONS``); an option with a fixed set of values
reads its choices from the registry behind it, when the parser of that command is built (so a
command that only reads a run never imports the training code).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from mtnas.core import MAX_INT, MAX_SEED, MtnasError, Registry, did_you_mean

__all__ = ["OPTIONS", "Parser", "at_least", "choice", "positive_float"]


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are mtnas's one-line user errors (exit 2), not usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise MtnasError(f"{self.prog}: {message} (see '{self.prog} --help')")


def choice(names: Registry | tuple[str, ...], kind: str | None = None) -> Callable[[str], str]:
    """An argparse type: one of a registry's names (or of a tuple), with a did-you-mean otherwise."""
    valid = names.names() if isinstance(names, Registry) else list(names)
    kind = kind or (names.kind if isinstance(names, Registry) else "value")

    def parse(text: str) -> str:
        if text not in valid:
            raise argparse.ArgumentTypeError(f"unknown {kind} {text!r}{did_you_mean(text, valid)}; valid: {', '.join(valid)}")
        return text

    parse.__name__ = kind
    return parse


def at_least(low: int, high: int = MAX_INT) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low`` (and <= ``high``)."""

    def parse(text: str) -> int:
        digits = text.strip().lstrip("+-")
        if not digits.isdigit() or len(digits) > 20:  # int() of thousands of digits is slow, then refused
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}" if value < low else
                                             f"must be <= {high}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")


def _seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=at_least(0, MAX_SEED), default=None,
                   help=f"random seed, 0..{MAX_SEED} (default: the space's seed)")


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _space(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="a built-in search space name (see 'mtnas spaces') or a YAML path")


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run folder (runs/dg1), or a study by its storage: postgresql://user@host/db#dg1")


def _epochs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=at_least(1), default=None,
                   help="override the space's training epochs (delta-m compares with single-task networks trained "
                        "as long)")


def _budget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", dest="budget_epochs", type=at_least(1), default=None,
                   help="shrink every budget to N epochs (training and proxy training N, a search 2N with N of "
                        "warm-up; SearchSpace.with_budget): a quick look, not a result to trust")


def _set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="change a key of the space, e.g. --set training.lr=0.01 --set dataset.args.root=/data "
                        "(repeatable; VALUE is YAML; checked like the file)")


def _threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=at_least(1, 4096), default=None,
                   help="CPU threads of torch per process (default: $MTNAS_THREADS, else $OMP_NUM_THREADS, else "
                        "the physical cores divided among the local worker processes)")


def _log_to(p: argparse.ArgumentParser) -> None:
    from mtnas.train import TRACKERS  # the registry alone: no torch

    pick = choice(TRACKERS)

    def trackers(text: str) -> list[str]:
        return [pick(name.strip()) for name in text.split(",") if name.strip()]

    trackers.__name__ = "tracker"
    p.add_argument("--log-to", action="extend", type=trackers, default=[], metavar="TRACKER[,TRACKER]",
                   help=f"also send every training's curves to {' | '.join(TRACKERS.names())} (comma-separated or "
                        "repeated), into logs/ of the run folder (retrain: of its output folder); needs "
                        "pip install 'mtnas[TRACKER]'")


#: option name -> the function that adds it to a command's parser
OPTIONS: Registry[Callable[[argparse.ArgumentParser], None]] = Registry("option")
for _name, _add in (("space", _space), ("run", _run), ("epochs", _epochs), ("budget", _budget), ("set", _set),
                    ("seed", _seed), ("device", _device), ("threads", _threads), ("json", _json), ("quiet", _quiet), ("log_to", _log_to)):
    OPTIONS.add(_name, _add)
