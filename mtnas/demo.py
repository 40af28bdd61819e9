"""``mtnas demo``: the path so far on the planted benchmark, on a small budget.

On ``digit_gratings`` it trains the single-task baselines and the classic trees (all-shared,
independent), runs one differentiable search, retrains the tree it found from scratch, and
compares them all in delta-m, params and FLOPs. The planted digit | grating split is trained
too, as the known right answer. Files go to ``out/``: the found tree's ``arch.json``, its
``routing.npz`` and ``demo.json`` with every figure printed.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtnas import __version__
from mtnas.architecture import Architecture
from mtnas.baselines import compute_baselines
from mtnas.fixed import COMPARE_HEADERS, compare_rows
from mtnas.io import atomic_write_text
from mtnas.search import search_tree
from mtnas.space import load_resolved
from mtnas.text import format_table
from mtnas.train import select_device
from mtnas.tree import BranchingTree
from mtnas.tree_training import train_tree

__all__ = ["run_demo"]

DEMO_SPACE = "digit_gratings"


def run_demo(*, out: Path, device: str = "auto", epochs: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Search, retrain and compare on ``digit_gratings``; write ``out/``; return the summary."""
    start = time.perf_counter()
    out = Path(out)
    space, bundle = load_resolved(DEMO_SPACE)
    if epochs is not None:
        space = replace(
            space,
            training=replace(space.training, epochs=epochs),
            search=replace(space.search, epochs=max(2 * epochs, 2), warmup_epochs=epochs),
        )
    dev = select_device(device)
    print(f"mtnas demo: {space.name} ({len(bundle.train)} training images, {len(space.tasks)} tasks) on {dev}")
    print("1/3 single-task baselines and the all-shared tree")
    baselines = compute_baselines(space, bundle, device=dev, seed=space.seed, progress=progress)
    print("2/3 differentiable search")
    found = search_tree(space, bundle, seed=space.seed, device=dev, progress=progress)
    print(f"    found in {found.seconds:.0f}s: {found.tree.describe()}")
    print("3/3 training the found tree, the planted split and independent networks from scratch")
    tasks, layers = space.task_names, space.num_layers
    trees = {
        "found by search": found.tree,
        "planted split @1": BranchingTree.from_split_points(tasks, layers, {1: bundle.planted_groups}),
        "independent": BranchingTree.independent(tasks, layers),
    }
    results = {"all-shared": baselines.all_shared}
    results.update(
        {label: train_tree(tree, space, bundle, device=dev, seed=space.seed, progress=progress) for label, tree in trees.items()}
    )
    rows = compare_rows(results, baselines, space)
    print(format_table(COMPARE_HEADERS, rows))
    arch = Architecture(
        found.tree,
        space.to_dict(),
        cost=results["found by search"].cost.to_dict(),
        metrics={"val": results["found by search"].val, "delta_m": rows[1][-1]},
        provenance={"run": "demo", "seed": space.seed, "mtnas_version": __version__},
    )
    arch.save(out / "arch.json")
    found.save_routing(out / "routing.npz")
    summary = {
        "space": space.name,
        "device": str(dev),
        "found_tree": found.tree.describe(),
        "trees": {label: {**r.to_dict(), "delta_m_test": row[-1]} for (label, r), row in zip(results.items(), rows)},
        "seconds": time.perf_counter() - start,
    }
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=1))
    print(f"\nThe found tree:\n{found.tree.render_text()}")
    print(f"wrote {out / 'arch.json'}, {out / 'routing.npz'} and {out / 'demo.json'} in {summary['seconds']:.0f}s")
    return summary
