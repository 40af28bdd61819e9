"""The ``mtnas`` command line: each subcommand parses, calls the library, prints.

Exit codes: 0 success (also when the reader of the output went away: ``mtnas spaces | head -1``),
2 user error (one line on stderr; ``--debug`` adds the traceback), 1 bug, 130 interrupted. Only the invoked command's arguments are declared, and each command imports
what it needs when it runs: ``mtnas trials``, ``show`` and ``spaces`` never import torch.

``--plugins MODULE[,MODULE...]`` (and the environment variable ``MTNAS_PLUGINS``) names the
user's modules to import before the command runs: the only way a dataset or backbone of the
user's own comes in (see ``mtnas.core.PluginRegistry``). The modules are passed on to the
processes a command starts (local search workers) through ``MTNAS_PLUGINS``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtnas.cli._options import OPTIONS, Parser, at_least, choice, positive_float
from mtnas.core import (
    PLUGINS_ENV,
    MtnasError,
    MtnasWarning,
    Registry,
    format_table,
    load_plugins,
    one_line,
    plugin_modules,
)
from mtnas.core._version import __version__

__all__ = ["COMMANDS", "Command", "build_parser", "main", "use_plugins"]


@dataclass(frozen=True)
class Command:
    """A subcommand: one-line help, the shared options it takes, its own arguments, what it runs."""

    help: str
    options: tuple[str, ...]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


#: The subcommands, registered in pipeline order (``--help`` lists them so).
COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, options: tuple[str, ...] = ()) -> Callable:
    """Register ``run`` as subcommand ``name``; ``run.arguments`` (if set) declares its own arguments."""

    def decorate(run: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int | None]:
        COMMANDS.add(name, Command(help, options, getattr(run, "arguments", lambda p: None), run))
        return run

    return decorate


def arguments(add: Callable[[argparse.ArgumentParser], None]) -> Callable:
    """Attach a command's own argument declarations (applied before ``command`` registers it)."""

    def decorate(run: Callable) -> Callable:
        run.arguments = add
        return run

    return decorate


def _choices(registry: Registry) -> str:
    return " | ".join(registry.names())


def _json_safe(data: object) -> object:
    """``data`` with every NaN or infinite float as null: ``--json`` prints valid JSON (RFC 8259 has
    no NaN), and a number that is not one reads as missing."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json_safe(v) for v in data]
    return data


def _emit(data: object, text: str, as_json: bool) -> None:
    print(json.dumps(_json_safe(data), indent=2, allow_nan=False) if as_json else text)


def _check_space_file(args: argparse.Namespace) -> None:
    """A space that cannot be read (a file fault, malformed or hostile YAML, not a mapping) or whose
    keys are wrong (an unknown or missing key, a value of the wrong type in its dataset section, a
    bad --set) is reported here, before the command imports torch: the error comes in a blink.
    Checking a value against a registry (a backbone, a head) imports torch, so such an error comes
    from the full load that follows."""
    if args.space and not getattr(args, "resume", False):
        from mtnas.space import load_space  # the schema: no torch until a registry is read

        load_space(args.space, overrides=getattr(args, "overrides", None) or ())


def _space_arg(args: argparse.Namespace) -> object:
    """The command's space: its name or path as given, or (with ``--set`` or a budget ``--epochs``)
    the ``SearchSpace`` they make of it."""
    overrides, budget = list(getattr(args, "overrides", None) or []), getattr(args, "budget_epochs", None)
    if getattr(args, "search_budget", None) is not None:
        overrides.append(f"search.budget={args.search_budget}")
    if not overrides and budget is None:
        return args.space
    from mtnas.space import load_space

    space = load_space(args.space, overrides=overrides)
    from mtnas.study import STUDY_DRIVERS

    if getattr(args, "search_budget", None) is not None and space.search.method != "budget" \
            and getattr(args, "strategy", None) not in STUDY_DRIVERS:
        raise MtnasError(f"--budget sets search.budget, which only search.method 'budget' (or --strategy "
                         f"{', '.join(STUDY_DRIVERS.names())}) reads; this space's method is {space.search.method!r}: "
                         "add --set search.method=budget")
    return space.with_budget(budget) if budget is not None else space


def _use_threads(args: argparse.Namespace, workers: int = 1) -> None:
    from mtnas.train import use_cpu_threads

    use_cpu_threads(args.threads, workers=workers)


# --- the pipeline: spaces, search, look, export, retrain ------------------------------------------


def _spaces_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default=None, help="one built-in space (default: all of them)")
    p.add_argument("--yaml", action="store_true",
                   help="print the space's YAML file, to copy and edit (e.g. mtnas spaces digit_gratings --yaml > my.yaml)")


@command("spaces", "list the built-in search spaces, or print one's YAML", ("json",))
@arguments(_spaces_args)
def _spaces(args: argparse.Namespace) -> None:
    from mtnas.space._builtin import builtin_yaml, list_spaces  # YAML only: no torch

    if args.yaml:
        if args.json:
            raise MtnasError("--yaml prints a space's YAML file and --json the list of spaces as JSON: give one of them")
        if args.name is None:
            raise MtnasError("--yaml prints one space: give its name, e.g. mtnas spaces digit_gratings --yaml")
        sys.stdout.write(builtin_yaml(args.name))
        return
    spaces = [s for s in list_spaces() if args.name is None or s[0] == args.name]
    if not spaces:
        builtin_yaml(args.name)  # the error: no such space, with the closest name and the list
    _emit([{"space": n, "description": d} for n, d in spaces],
          format_table(["space", "description"], [list(s) for s in spaces]), args.json)


def _search_args(p: argparse.ArgumentParser) -> None:
    from mtnas.study import MAX_LOCAL_WORKERS, OBJECTIVES, SAMPLERS, STRATEGIES

    p.add_argument("space", nargs="?", help="a built-in search space name or a YAML path (not with --resume)")
    p.add_argument("--name", help="run folder name under --runs-dir (default: the space's name)")
    p.add_argument("--trials", type=at_least(1), default=None, help="completed trials to reach, the two enqueued references (all-shared, independent) included "
                        "(default: search.trials)")
    p.add_argument("--strategy", default="differentiable", type=choice(STRATEGIES),
                   help=f"how a trial gets its tree: {_choices(STRATEGIES)}")
    p.add_argument("--objectives", default="delta_m,flops",
                   help=f"comma-separated, delta_m among them; from: {', '.join(OBJECTIVES.names())}")
    p.add_argument("--sampler", default="tpe", type=choice(SAMPLERS), help=f"Optuna sampler: {_choices(SAMPLERS)}")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run named by --name")
    p.add_argument("--workers", type=at_least(0, MAX_LOCAL_WORKERS), default=1,
                   help=f"local worker processes, at most {MAX_LOCAL_WORKERS} (2+: on a journal file; 0: create the "
                        "study for 'mtnas worker')")
    p.add_argument("--storage", default=None, help="an RDB URL (e.g. postgresql://user@host/db) for the study")
    p.add_argument("--artifacts", default=None,
                   help="where trial files go: s3://BUCKET for workers on machines sharing no disk "
                        "(default: the run folder's artifacts/)")
    p.add_argument("--timeout", type=positive_float, default=None,
                   help="seconds after which no new trial starts (in every local worker process)")
    p.add_argument("--runs-dir", default="runs", help="where run folders live")
    p.add_argument("--budget", dest="search_budget", type=positive_float, default=None, metavar="TRAININGS",
                   help="trainings of the all-shared tree (at the search budget) the budgeted search may spend: "
                        "search.budget, for search.method budget or --strategy pool (default 3)")


@command("search", "search sharing trees with Optuna trials into runs/NAME",
         ("budget", "set", "seed", "device", "threads", "json", "quiet", "log_to"))
@arguments(_search_args)
def _search(args: argparse.Namespace) -> None:
    _check_space_file(args)
    from mtnas.study import run_search, write_pareto

    if not args.resume and not args.space:
        raise MtnasError("give a search space (a built-in name or a YAML path), or --resume --name NAME")
    if args.resume and not args.name:
        raise MtnasError("--resume needs --name NAME of the run to continue")
    if args.resume and (args.overrides or args.budget_epochs or args.search_budget is not None):
        raise MtnasError("--resume continues a run with the space it started with (its space.yaml); drop --set, "
                         "--epochs and --budget, or start a new run with another --name")
    space = "" if args.resume else _space_arg(args)
    name = args.name if args.name is not None or args.resume else Path(args.space).stem  # a file's name, as before
    run, study = run_search(
        space, name=name, trials=args.trials, strategy=args.strategy, objectives=args.objectives,
        sampler=args.sampler, seed=args.seed, resume=args.resume, device=args.device, runs_dir=args.runs_dir,
        workers=args.workers, storage=args.storage, artifacts=args.artifacts, timeout=args.timeout,
        threads=args.threads, progress=not args.quiet, log_to=args.log_to,
    )
    front = write_pareto(run, study)
    text = f"run folder: {run.root}\n{_front_table(front)}"
    if args.workers == 0 and not front:
        text = (f"run folder: {run.root}\nthe study is ready and no trial ran here (--workers 0): start workers with "
                f"'mtnas worker --storage {args.storage or run.storage()} --study {run.name}' on any machine that reaches "
                "the storage "
                f"(they run trials until it holds {study.user_attrs['mtnas']['trials']}), then 'mtnas show {run.root}'")
    _emit({"run": str(run.root), "front": front}, text, args.json)


def _front_table(front: list) -> str:
    if not front:
        return "Pareto front: empty (no trial completed)"
    rows = [[f["trial"], f["reference"] or "-", f["tree"], round(f["delta_m"], 3), f["flops"], f["params"]]
            for f in front]
    return ("Pareto front (--pick chooses among the searched trees; a reference by --trial N):\n"
            + format_table(["trial", "reference", "tree", "delta-m val %", "FLOPs", "params"], rows))


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", required=True, help="the study's storage URL (postgresql://..., journal:///...)")
    p.add_argument("--study", required=True, help="the study's name (the run's name)")
    p.add_argument("--timeout", type=positive_float, default=None,
                   help="seconds after which this worker starts no new trial")


@command("worker", "join a study from any machine and run its trials", ("device", "threads", "quiet", "log_to"))
@arguments(_worker_args)
def _worker(args: argparse.Namespace) -> None:
    from mtnas.study import run_worker

    _use_threads(args)
    study = run_worker(args.storage, args.study, device=args.device, timeout=args.timeout, progress=not args.quiet,
                       log_to=args.log_to)
    print(f"worker done: the study holds {len(study.trials)} trials")


@command("trials", "table of a run's trials: objectives, tree, state", ("run", "json"))
def _trials(args: argparse.Namespace) -> None:
    from mtnas.study import SearchRun, fail_reason, load_study, trial_label, trial_objectives

    study = load_study(SearchRun.open(args.run))
    rows = [
        {"trial": t.number, "state": t.state.name,
         "objectives": trial_objectives(study, t) if t.values else None, "tree": trial_label(study, t),
         "delta_m": t.user_attrs.get("delta_m"), "flops": t.user_attrs.get("flops"),
         "reference": t.user_attrs.get("fixed_tree"), "reused_from": t.user_attrs.get("reused_from"),
         "phase": t.user_attrs.get("phase") if t.state.name == "RUNNING" else None,
         "fail_reason": fail_reason(study, t), "pruned_reason": t.user_attrs.get("pruned_reason"),
         "proposer": t.user_attrs.get("kind"), "chosen": bool(t.user_attrs.get("chosen"))}
        for t in study.get_trials(deepcopy=False)
    ]
    table = [[r["trial"], r["state"] + (f" ({r['phase']})" if r["phase"] else ""), r["tree"] or "-", r["delta_m"],
              r["flops"], _note(r)] for r in rows]
    _emit(rows, format_table(["trial", "state", "tree", "delta-m", "FLOPs", "note"], table), args.json)


def _note(row: dict) -> str:
    """The note of a trial in 'mtnas trials': a reference or a pool's candidate (its proposer, the
    answer), reused, or why it failed or was pruned."""
    notes = [f"reference: {row['reference']}" if row["reference"] else "",
             f"candidate of {row['proposer']}" if row["proposer"] else "",
             "the search's answer" if row["chosen"] else "",
             f"reused trial {row['reused_from']}" if row["reused_from"] is not None else "",
             row["fail_reason"] if row["state"] == "FAIL" else "",
             row["pruned_reason"] if row["state"] == "PRUNED" else ""]
    return "; ".join(n for n in notes if n) or "-"


def _show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run folder or STORAGE_URL#STUDY (its Pareto trees), or an arch.json (its tree)")
    p.add_argument("--trial", type=at_least(0), default=None,
                   help="one trial of the run in detail: its tree, per-task metrics, hyperparameters, state")


@command("show", "the Pareto-best trees of a run (or one trial, or an arch.json's tree) as text", ("json",))
@arguments(_show_args)
def _show(args: argparse.Namespace) -> None:
    from mtnas.study import SearchRun, load_study, pareto, render_trial, trial_details, trial_tree
    from mtnas.tree import Architecture

    if Path(args.run).is_file():  # an arch.json: its one tree
        if args.trial is not None:
            raise MtnasError(f"--trial picks a trial of a run folder; {args.run} is one tree (an arch.json)")
        arch = Architecture.load(args.run)
        _emit({"tree": arch.tree.to_dict(), "sharing": arch.tree.describe(), "cost": arch.cost,
               "metrics": arch.metrics}, arch.tree.render_text(), args.json)
        return
    run = SearchRun.open(args.run)
    study = load_study(run)
    if args.trial is not None:
        details = trial_details(study, args.trial)
        _emit(details, render_trial(details), args.json)
        return
    entries, blocks = [], []
    for t in pareto(study):
        a, tree = t.user_attrs, trial_tree(study, t)
        reference = a.get("fixed_tree")
        entries.append({"trial": t.number, "reference": reference, "delta_m": a["delta_m"], "flops": a["flops"],
                        "params": a["params"], "sharing": tree.describe(), "tree": tree.to_dict()})
        mark = f" (reference: {reference})" if reference else ""
        blocks.append(f"trial {t.number}{mark}: delta-m {a['delta_m']:+.2f}%  FLOPs {a['flops']:,}  "
                      f"params {a['params']:,}\n{tree.render_text()}\n")
    if not entries:
        blocks.append(f"no completed trial yet; 'mtnas trials {args.run}' shows the trials")
    _emit(entries, "\n".join(blocks), args.json)


def _plot_args(p: argparse.ArgumentParser) -> None:
    from mtnas.study import PICKS

    p.add_argument("source", help="a run folder, STORAGE_URL#STUDY, or an arch.json")
    p.add_argument("-o", "--out", default=None,
                   help="FILE.png, .svg or .pdf (default: tree.png in the run / beside the arch.json)")
    p.add_argument("--trial", type=at_least(0), default=None, help="the run's trial to draw (default: --pick)")
    p.add_argument("--pick", default="trade-off", type=choice(PICKS),
                   help=f"which Pareto trial to draw: {_choices(PICKS)} (see the README)")


@command("plot", "draw a sharing tree: a run's trial or an arch.json, to PNG/SVG/PDF")
@arguments(_plot_args)
def _plot(args: argparse.Namespace) -> None:
    from mtnas.report import plot_source

    print(plot_source(args.source, args.out, trial=args.trial, pick=args.pick))


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", default=None, help="where to write the page (default: RUN/report.html)")


@command("report", "a self-contained HTML page of a run: trees, Pareto front, routing", ("run",))
@arguments(_report_args)
def _report(args: argparse.Namespace) -> None:
    from mtnas.report import write_report

    print(write_report(args.run, out=args.out))


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders (or STORAGE_URL#STUDY)")
    p.add_argument("-o", "--out", default=None, help="the picture, .png/.svg/.pdf (default: compare-A-B.png here)")


@command("compare", "runs side by side: their searched fronts as a table and a picture", ("json",))
@arguments(_compare_args)
def _compare(args: argparse.Namespace) -> None:
    from mtnas.report import compare_runs

    report = compare_runs(args.runs, args.out)
    _emit(report.to_dict(), report.render(), args.json)


def _export_args(p: argparse.ArgumentParser) -> None:
    from mtnas.export import DEPLOY_FORMATS
    from mtnas.study import PICKS

    p.add_argument("source", help="a run folder or STORAGE_URL#STUDY (exports a trial's tree), or an arch.json "
                                  "with trained weights (--format)")
    p.add_argument("-o", "--out", required=True, help="the folder to write")
    p.add_argument("--trial", type=at_least(0), default=None, help="the trial to export (default: --pick)")
    p.add_argument("--pick", default="trade-off", type=choice(PICKS),
                   help=f"which Pareto trial: {_choices(PICKS)} (trade-off: what the default search would choose; see the README)")
    p.add_argument("--with-weights", action="store_true", help="also write the supernet weights the tree inherits")
    p.add_argument("--format", default=None, type=choice(DEPLOY_FORMATS),
                   help=f"serialise a retrained model (source: its arch.json): {_choices(DEPLOY_FORMATS)}")
    p.add_argument("--weights", default=None, help="trained weights for --format (default: retrain/weights.safetensors)")


@command("export", "export a trial (arch.json, tree.png, weights) or a model (ONNX)", ("json",))
@arguments(_export_args)
def _export(args: argparse.Namespace) -> None:
    from mtnas.export import export_model, export_trial

    source = Path(args.source)
    if args.format:
        if source.is_dir():
            raise MtnasError(f"--format {args.format} serialises a trained model: give its arch.json (after "
                             "'mtnas retrain'), not a run folder")
        report = export_model(source, args.out, fmt=args.format, weights=args.weights)
    else:
        if not source.is_dir() and "://" not in args.source:
            raise MtnasError(f"{source}: expected a run folder, a study as STORAGE_URL#NAME, or an arch.json "
                             "with --format onnx|torch-export")
        report = export_trial(args.source, args.out, trial=args.trial, pick=args.pick, with_weights=args.with_weights)
    _emit(report.to_dict(), report.render(), args.json)


def _retrain_args(p: argparse.ArgumentParser) -> None:
    from mtnas.train import DATA_PLACEMENTS, INITS, PRECISIONS

    p.add_argument("arch", help="an arch.json (from 'mtnas export' or a search run)")
    p.add_argument("-o", "--out", default=None, help="output folder (default: retrain/ beside the arch.json)")
    p.add_argument("--precision", default="auto", type=choice(PRECISIONS, "precision"),
                   help=f"{' | '.join(PRECISIONS)}; auto: bf16 autocast on CUDA, fp32 elsewhere; fp16 needs CUDA")
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    p.add_argument("--data", default="auto", type=choice(DATA_PLACEMENTS, "data placement"),
                   help=f"{' | '.join(DATA_PLACEMENTS)}: the dataset on the device (batches are slices) or in "
                        "host memory (pinned, copied per batch); auto: device up to 2 GiB")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    p.add_argument("--restart", action="store_true",
                   help="discard the checkpoint in the output folder (e.g. a damaged one) and train from scratch")
    p.add_argument("--init", default="scratch", type=choice(INITS, "init"),
                   help=f"{' | '.join(INITS)}; scratch: fresh weights (a pretrained backbone.weights file if "
                        "the space names one); inherited: the supernet's (--weights)")
    p.add_argument("--weights", default=None,
                   help="weights for --init inherited (default: weights.safetensors beside the arch.json)")


@command("retrain", "retrain an arch.json (its training.epochs, or --epochs): delta-m, DDP",
         ("epochs", "seed", "device", "threads", "json", "quiet", "log_to"))
@arguments(_retrain_args)
def _retrain(args: argparse.Namespace) -> None:
    from mtnas.train import retrain

    _use_threads(args, workers=int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))  # torchrun: its processes share

    def budget_note(epochs: int) -> None:  # the arch.json's budget is its search's: say it, not "the full budget"
        print(f"mtnas: note: training for {epochs} epoch{'s' if epochs != 1 else ''}, the training.epochs of "
              f"{args.arch} (its search's budget); --epochs N trains for another", file=sys.stderr)

    report = retrain(
        args.arch, out_dir=args.out, epochs=args.epochs, device=args.device, precision=args.precision,
        compile=args.compile, resume=args.resume, restart=args.restart, init=args.init, weights=args.weights, seed=args.seed, data=args.data,
        progress=not args.quiet, on_start=budget_note if args.epochs is None and not args.resume else None,
        log_to=args.log_to,
    )
    if report is not None:  # None on the ranks other than 0 of a torchrun launch
        _emit(report.to_dict(), report.render(), args.json)


# --- fixed trees and the demo --------------------------------------------------------------------


def _train_args(p: argparse.ArgumentParser) -> None:
    from mtnas.tree import NAMED_TREES

    p.add_argument("--tree", default="all-shared", help=f"{' | '.join(NAMED_TREES)}, or an arch.json path")


@command("train", "train one fixed tree: per-task metrics, cost, delta-m",
         ("space", "epochs", "set", "seed", "device", "threads", "json", "quiet"))
@arguments(_train_args)
def _train(args: argparse.Namespace) -> None:
    _check_space_file(args)
    from mtnas.train import run_train

    _use_threads(args)
    report = run_train(
        _space_arg(args), args.tree, seed=args.seed, device=args.device, epochs=args.epochs, progress=not args.quiet
    )
    _emit(report.to_dict(), report.render(), args.json)


def _baselines_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cache", action="store_true", help="retrain even when cached results exist")


@command("baselines", "train single-task networks and the all-shared tree (cached)",
         ("space", "epochs", "set", "seed", "device", "threads", "json", "quiet"))
@arguments(_baselines_args)
def _baselines(args: argparse.Namespace) -> None:
    _check_space_file(args)
    from mtnas.train import run_baselines

    _use_threads(args)
    report = run_baselines(
        _space_arg(args), seed=args.seed, device=args.device, epochs=args.epochs, use_cache=not args.no_cache,
        progress=not args.quiet,
    )
    _emit(report.to_dict(), report.render(), args.json)


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="where the demo writes its files")
    p.add_argument("--trials", type=at_least(3), default=None,
                   help="search trials, the two enqueued baselines included (default 4)")


@command("demo", "the whole path on a small budget, minutes on a CPU", ("budget", "set", "device", "threads", "quiet"))
@arguments(_demo_args)
def _demo(args: argparse.Namespace) -> None:
    from mtnas.cli._demo import DEMO_TRIALS, run_demo

    _use_threads(args)
    run_demo(out=Path(args.out), device=args.device, epochs=args.budget_epochs, trials=args.trials or DEMO_TRIALS,
             overrides=args.overrides, threads=args.threads, progress=not args.quiet)


# --- entry point ---------------------------------------------------------------------------------


def _invoked(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is one), or None."""
    return next((a for a in argv if a in COMMANDS), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser: every subcommand is listed; only the arguments of ``only`` are declared (so the
    registries behind its choices are imported for that command alone)."""
    parser = Parser(
        prog="mtnas", description="Multi-task neural architecture search: find which layers tasks should share."
    )
    parser.add_argument("--version", action="version", version=f"mtnas {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--plugins", default=None, metavar="MODULE[,MODULE...]", help=_PLUGINS_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS.in_order():
        cmd = COMMANDS.get(name)
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        p.set_defaults(_run=cmd.run)
        if name != only:
            continue
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
        p.add_argument("--plugins", default=argparse.SUPPRESS, metavar="MODULE[,MODULE...]", help=_PLUGINS_HELP)
        for option in cmd.options:
            OPTIONS.get(option)(p)
        cmd.add_arguments(p)
    return parser


_PLUGINS_HELP = (f"your modules to import first, comma-separated: they register your datasets and backbones "
                 f"(also {PLUGINS_ENV}; the current directory is searched)")


def use_plugins(given: str | None) -> list[str]:
    """Import the plugin modules of ``MTNAS_PLUGINS`` and of ``--plugins`` (``given``), in that order,
    and leave them all in ``MTNAS_PLUGINS`` for the processes this one starts."""
    from_env = plugin_modules(os.environ.get(PLUGINS_ENV), PLUGINS_ENV)
    load_plugins(from_env, PLUGINS_ENV)
    extra = [m for m in plugin_modules(given) if m not in from_env]
    load_plugins(extra)
    if extra:
        os.environ[PLUGINS_ENV] = ",".join([*from_env, *extra])
    return [*from_env, *extra]


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """While the command runs, mtnas's own warnings print as one line (``mtnas: note: ...``); any
    other as Python shows it."""
    python = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if issubclass(category, MtnasWarning):
            print(f"mtnas: {category.label}: {one_line(str(message), 2000)}", file=file or sys.stderr)
        else:
            python(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    with _one_line_warnings():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser(_invoked(argv)).parse_args(argv)
        use_plugins(args.plugins)
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:  # `mtnas spaces | head -1`: the reader has what it wanted; end quietly, as Unix tools do
        _silence_stdout()
        return 0
    except MtnasError as exc:
        if debug:
            traceback.print_exc()
        print(f"mtnas: error: {one_line(str(exc), 2000)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine said no: a full disk, a read-only or missing folder
        if debug:
            traceback.print_exc()
        print(f"mtnas: error: {_os_failure(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtnas: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        cause = _storage_failure(exc)
        if cause is None:
            raise  # a bug: the traceback, exit 1
        if debug:
            traceback.print_exc()
        print(f"mtnas: error: the study's storage failed: {one_line(cause, 300)}; check the run folder's "
              "study.db or the database server", file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail on the closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _os_failure(exc: OSError) -> str:
    """One line for an error of the machine: what, on which file, and what to do."""
    path = exc.filename2 if exc.filename2 is not None else exc.filename  # a rename: its target
    where = f" ({path})" if path is not None else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free some space there, then run the command again (a search continues with 'mtnas search --resume')"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = "check that this folder may be written, or choose another"
    else:
        todo = "check that path, then run the command again"
    return f"{exc.strerror or type(exc).__name__}{where}; {todo}"


def _storage_failure(exc: BaseException) -> str | None:
    """The first line of a study-storage failure (a damaged SQLite file, a database that went
    away) anywhere in ``exc``'s chain, or None for any other exception."""
    seen: BaseException | None = exc
    while seen is not None:
        module = type(seen).__module__
        if module.startswith(("sqlalchemy", "sqlite3", "psycopg")) or type(seen).__name__ == "StorageInternalError":
            text = str(seen.__cause__ or seen).strip()
            return text.splitlines()[0] if text else type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
