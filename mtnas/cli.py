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
    p.add_argument("--epochs", type=int, default=None, help="shrink every training budget to this many epochs (faster)")
    p.add_argument("--trials", type=int, default=None, help="search trials, the two enqueued baselines included (default 4)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _demo(args: argparse.Namespace) -> None:
    from mtnas.demo import DEMO_TRIALS, run_demo

    run_demo(out=Path(args.out), device=args.device, epochs=args.epochs, trials=args.trials or DEMO_TRIALS,
             progress=not args.quiet)


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", nargs="?", help="a built-in search space name or a YAML path (not with --resume)")
    p.add_argument("--name", help="run folder name under runs/ (default: the space's name)")
    p.add_argument("--trials", type=int, default=None, help="completed trials to reach (default: search.trials)")
    p.add_argument("--strategy", default="differentiable", help="differentiable | sampled")
    p.add_argument("--objectives", default="delta_m,flops", help="comma-separated: delta_m, flops, params")
    p.add_argument("--sampler", default="tpe", help="tpe | nsga2 | random")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the space's seed)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run named by --name")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (2+: on a journal file; 0: create the study for 'mtnas worker')")
    p.add_argument("--storage", default=None, help="an RDB URL (e.g. postgresql://...) for the study")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    p.add_argument("--runs-dir", default="runs", help="where run folders live")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _search(args: argparse.Namespace) -> None:
    from mtnas.study import run_search, write_pareto

    if not args.resume and not args.space:
        raise MtnasError("give a search space (a built-in name or a YAML path), or --resume --name NAME")
    if args.resume and not args.name:
        raise MtnasError("--resume needs --name NAME of the run to continue")
    run, study = run_search(
        args.space or "", name=args.name, trials=args.trials, strategy=args.strategy, objectives=args.objectives,
        sampler=args.sampler, seed=args.seed, resume=args.resume, device=args.device, runs_dir=args.runs_dir,
        workers=args.workers, storage=args.storage, timeout=args.timeout, progress=not args.quiet,
    )
    print(f"run folder: {run.root}")
    print(_front_table(write_pareto(run, study)))


def _front_table(front: list) -> str:
    from mtnas.text import format_table

    rows = [[f["trial"], f["tree"], round(f["delta_m"], 3), f["flops"], f["params"]] for f in front]
    return "Pareto front:\n" + format_table(["trial", "tree", "delta-m val %", "FLOPs", "params"], rows)


def _run_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run folder, e.g. runs/dg1")


def _trials_args(p: argparse.ArgumentParser) -> None:
    _run_arg(p)
    p.add_argument("--json", action="store_true", help="print the trials as JSON")


def _trials(args: argparse.Namespace) -> None:
    from mtnas.study import SearchRun, load_study
    from mtnas.text import format_table

    study = load_study(SearchRun(Path(args.run)))
    rows = [
        {"trial": t.number, "state": t.state.name, "values": t.values, "tree": t.user_attrs.get("tree"),
         "delta_m": t.user_attrs.get("delta_m"), "flops": t.user_attrs.get("flops"),
         "reused_from": t.user_attrs.get("reused_from"), "fail_reason": t.user_attrs.get("fail_reason")}
        for t in study.get_trials(deepcopy=False)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    table = [[r["trial"], r["state"], r["tree"] or "-", r["delta_m"], r["flops"], r["reused_from"]] for r in rows]
    print(format_table(["trial", "state", "tree", "delta-m", "FLOPs", "reused from"], table))


def _show(args: argparse.Namespace) -> None:
    from mtnas.architecture import Architecture
    from mtnas.study import SearchRun, load_study, pareto

    if Path(args.run).is_file():  # an arch.json: its one tree
        arch = Architecture.load(args.run)
        print(arch.tree.render_text())
        return
    run = SearchRun(Path(args.run))
    for t in pareto(load_study(run)):
        tree = Architecture.load(run.trial_dir(t.number) / "arch.json").tree
        print(f"trial {t.number}: delta-m {t.user_attrs['delta_m']:+.2f}%  FLOPs {t.user_attrs['flops']:,}  "
              f"params {t.user_attrs['params']:,}")
        print(tree.render_text() + "\n")


def _plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a run folder or an arch.json")
    p.add_argument("-o", "--out", default=None, help="FILE.png, .svg or .pdf (default: tree.png in the run / beside the arch.json)")
    p.add_argument("--trial", type=int, default=None, help="the run's trial to draw (default: the knee of the Pareto front)")


def _plot(args: argparse.Namespace) -> None:
    from mtnas.plot import plot_source

    print(plot_source(args.source, args.out, trial=args.trial))


def _report_args(p: argparse.ArgumentParser) -> None:
    _run_arg(p)
    p.add_argument("-o", "--out", default=None, help="where to write the page (default: RUN/report.html)")


def _report(args: argparse.Namespace) -> None:
    from mtnas.report import write_report

    print(write_report(args.run, out=args.out))


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", required=True, help="the study's storage URL (postgresql://..., journal:///...)")
    p.add_argument("--study", required=True, help="the study's name (the run's name)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _worker(args: argparse.Namespace) -> None:
    from mtnas.study import run_worker

    study = run_worker(args.storage, args.study, device=args.device, progress=not args.quiet)
    print(f"worker done: the study holds {len(study.trials)} trials")


def _retrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="an arch.json (from 'mtnas export' or a search run)")
    p.add_argument("-o", "--out", default=None, help="output folder (default: retrain/ beside the arch.json)")
    p.add_argument("--epochs", type=int, default=None, help="override the space's training epochs")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="auto: bf16 autocast on CUDA, fp32 elsewhere; fp16 needs CUDA")
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    p.add_argument("--data", default="auto", choices=["auto", "device", "host"],
                   help="dataset on the device (batches are slices) or in host memory (pinned, copied per batch); "
                        "auto: device up to 2 GiB")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    p.add_argument("--init", default="scratch", choices=["scratch", "inherited"],
                   help="scratch: fresh weights (a pretrained backbone.weights file if the space names one); inherited: the supernet's (--weights)")
    p.add_argument("--weights", default=None, help="weights for --init inherited (default: weights.safetensors beside the arch.json)")
    _run_args(p)


def _retrain(args: argparse.Namespace) -> None:
    from mtnas.retrain import retrain

    report = retrain(
        args.arch, out_dir=args.out, epochs=args.epochs, device=args.device, precision=args.precision,
        compile=args.compile, resume=args.resume, init=args.init, weights=args.weights, seed=args.seed, data=args.data,
        progress=not args.quiet,
    )
    if report is not None:  # None on the ranks other than 0 of a torchrun launch
        print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a run folder (exports a trial's tree) or an arch.json with trained weights (--format)")
    p.add_argument("-o", "--out", required=True, help="the folder to write")
    p.add_argument("--trial", type=int, default=None, help="the trial to export (default: --pick from the Pareto front)")
    p.add_argument("--pick", default="knee", help="quality | cheapest | knee (best trade-off; see the README)")
    p.add_argument("--with-weights", action="store_true", help="also write the supernet weights the tree inherits")
    p.add_argument("--format", default=None, help="onnx | torch-export: serialise a retrained model (source: arch.json)")
    p.add_argument("--weights", default=None, help="trained weights for --format (default: retrain/weights.safetensors)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")


def _export(args: argparse.Namespace) -> None:
    from mtnas.export import export_model, export_trial

    source = Path(args.source)
    if args.format:
        if source.is_dir():
            raise MtnasError(f"--format {args.format} serialises a trained model: give its arch.json (after "
                             "'mtnas retrain'), not a run folder")
        report = export_model(source, args.out, fmt=args.format, weights=args.weights)
    else:
        if not source.is_dir():
            raise MtnasError(f"{source}: expected a run folder (or an arch.json with --format onnx|torch-export)")
        report = export_trial(source, args.out, trial=args.trial, pick=args.pick, with_weights=args.with_weights)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())


COMMANDS.add("retrain", Command("retrain an arch.json at full budget: checkpoints, resume, DDP, delta-m", _retrain_args, _retrain))
COMMANDS.add("export", Command("export a trial (arch.json, tree.png, weights) or a model (ONNX)", _export_args, _export))
COMMANDS.add("worker", Command("join a study from any machine and run its trials", _worker_args, _worker))
COMMANDS.add("search", Command("search sharing trees with Optuna trials into runs/NAME", _search_args, _search))
COMMANDS.add("trials", Command("table of a run's trials: objectives, tree, state", _trials_args, _trials))
COMMANDS.add("show", Command("the Pareto-best trees of a run (or an arch.json's tree) as text", _run_arg, _show))
COMMANDS.add("plot", Command("draw a sharing tree: a run's trial or an arch.json, to PNG/SVG/PDF", _plot_args, _plot))
COMMANDS.add("report", Command("a self-contained HTML page of a run: trees, Pareto front, routing", _report_args, _report))
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
