"""``mtnas demo``: the whole path on the planted benchmark, on a small budget, in minutes on a CPU.

On ``digit_gratings``: a small ``mtnas search`` (the all-shared and independent trees, then a few
differentiable trials), the found tree with the best delta-m drawn and exported, retrained from
scratch at the space's full budget against single-task baselines of the same budget, and the run's
HTML report. Everything lands in one folder (default ``runs/demo``)::

    runs/demo/              the search's run folder (study.db, trials/, pareto.json, report.html)
    runs/demo/export/       arch.json, tree.png, weights.safetensors (inherited from the supernet)
    runs/demo/export/retrain/   final.json, metrics.jsonl, curves.png, weights.safetensors
    runs/demo/demo.json     every figure the demo printed
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mtnas.core import MtnasError, atomic_write_text, format_table
from mtnas.export import export_trial
from mtnas.report import write_report
from mtnas.space import load_resolved, load_space
from mtnas.study import run_search, searched_front
from mtnas.train import compute_baselines, retrain, select_device

__all__ = ["DEMO_SPACE", "DEMO_TRIALS", "run_demo"]

DEMO_SPACE = "digit_gratings"
DEMO_TRIALS = 4  # all-shared, independent, and two differentiable searches
MARKER = ".mtnas-demo"


def run_demo(*, out: Path, device: str = "auto", epochs: int | None = None, trials: int = DEMO_TRIALS,
             overrides: Sequence[str] = (), threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Search, draw, export, retrain and report on ``digit_gratings``; return the summary.

    ``epochs`` shrinks every budget (training, search, proxy) for a quick try; ``overrides``
    (``KEY.PATH=VALUE``) change keys of the space first; ``threads``: see ``mtnas.train.cpu_threads``.
    """
    start = time.perf_counter()
    out = Path(out)
    space = load_space(DEMO_SPACE, overrides=overrides)  # a bad --set fails before anything is replaced
    _clear_previous(out)
    space, bundle = load_resolved(space)
    if epochs is not None:
        space = space.with_budget(epochs)
    dev = select_device(device)
    threads = torch.get_num_threads()
    cpu = f", {threads} CPU thread{'s' if threads != 1 else ''}" if dev.type == "cpu" else ""
    print(f"mtnas demo: {space.name} ({len(bundle.train)} training images, {len(space.tasks)} tasks) on {dev}{cpu}")

    print(f"1/4 search: {trials} trials (all-shared, independent, then searches)")
    run, study = run_search(space, name=out.name, runs_dir=out.parent, trials=trials, device=device, threads=threads,
                            progress=progress)
    found = searched_front(study)  # the enqueued references left out
    if not found:
        raise MtnasError("the demo search completed no differentiable trial; run it again or with more --trials")
    best = max(found, key=lambda t: t.user_attrs["delta_m"])
    print(f"    best found tree: trial {best.number}, {best.user_attrs['tree']}")

    print("2/4 export: arch.json, tree.png and the weights its search trained")
    exported = export_trial(run.root, run.root / "export", trial=best.number, with_weights=True)

    print(f"3/4 retrain the found tree from scratch ({space.training.epochs} epochs) against single-task networks")
    report = retrain(exported.files["arch"], epochs=epochs, device=device, progress=progress)
    assert report is not None  # the demo is never launched by torchrun
    budget = replace(space, training=replace(space.training, epochs=report.epochs))
    baselines = compute_baselines(budget, bundle, device=dev, seed=report.seed, progress=progress)
    shared = baselines.all_shared

    print("4/4 report")
    page = write_report(run.root)

    rows = [
        ["all-shared", shared.tree.describe(), shared.cost.params, shared.cost.flops,
         baselines.delta_m(shared, budget, "test")],
        ["found by search", report.tree.describe(), report.params, report.flops, report.delta_m("test")],
    ]
    print("\nRetrained at the full budget (delta-m on the test split, against single-task networks):")
    print(format_table(["tree", "sharing", "params", "FLOPs", "delta-m test %"], rows))
    verdict = "beats" if rows[1][-1] > rows[0][-1] else "does not beat"
    print(f"The found tree {verdict} all-shared: {rows[1][-1]:+.2f}% against {rows[0][-1]:+.2f}%.")
    print(f"\nThe found tree:\n{report.tree.render_text()}")
    summary = {
        "space": space.name, "device": str(dev), "trials": trials, "best_trial": best.number,
        "found_tree": report.tree.describe(),
        "delta_m_test": {"all-shared": rows[0][-1], "found": rows[1][-1]},
        "files": {
            "run": str(run.root), "report": str(page), "arch": str(exported.files["arch"]),
            "tree_png": str(exported.files["picture"]), "weights": str(exported.files["weights"]),
            "retrain": report.out_dir,
        },
        "seconds": time.perf_counter() - start,
    }
    atomic_write_text(run.root / "demo.json", json.dumps(summary, indent=1))
    print("\nWhere everything is:")
    for label, path in [("run folder", run.root), ("report", page), ("tree picture", exported.files["picture"]),
                        ("architecture", exported.files["arch"]), ("retrained model", report.out_dir),
                        ("summary", run.root / "demo.json")]:
        print(f"  {label:16} {path}")
    print(f"done in {summary['seconds']:.0f}s")
    return summary


def _clear_previous(out: Path) -> None:
    """A previous demo in ``out`` (finished or not) is replaced; any other folder is left alone."""
    if out.exists():
        if not (out / MARKER).is_file():
            raise MtnasError(f"{out} exists and was not written by 'mtnas demo'; pass --out to another folder")
        print(f"replacing the previous demo in {out}")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("a folder written by 'mtnas demo', which replaces it on the next run\n")
