"""``mtnas demo``: the whole path on the planted benchmark, on a small budget.

For now (before the search lands) it trains the classic trees on ``digit_gratings`` - single-task
networks, all-shared, independent, and the planted digit | grating split - and compares them.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from mtnas.baselines import compute_baselines
from mtnas.fixed import COMPARE_HEADERS, compare_rows
from mtnas.io import atomic_write_text
from mtnas.space import load_resolved
from mtnas.text import format_table
from mtnas.train import select_device
from mtnas.tree import BranchingTree
from mtnas.tree_training import train_tree

__all__ = ["run_demo"]

DEMO_SPACE = "digit_gratings"


def run_demo(*, out: Path, device: str = "auto", epochs: int | None = None, progress: bool = True) -> dict:
    """Train and compare the baseline trees; write ``out/demo.json``; return what it wrote."""
    start = time.perf_counter()
    space, bundle = load_resolved(DEMO_SPACE)
    if epochs is not None:
        space = replace(space, training=replace(space.training, epochs=epochs))
    dev = select_device(device)
    print(f"mtnas demo: {space.name} ({len(bundle.train)} training images, {len(space.tasks)} tasks) on {dev}")
    baselines = compute_baselines(space, bundle, device=dev, seed=space.seed, progress=progress)
    tasks, layers = space.task_names, space.num_layers
    trees = {
        "all-shared": BranchingTree.all_shared(tasks, layers),
        "planted split @1": BranchingTree.from_split_points(tasks, layers, {1: bundle.planted_groups}),
        "independent": BranchingTree.independent(tasks, layers),
    }
    results = {"all-shared": baselines.all_shared}
    for label, tree in trees.items():
        if label not in results:
            results[label] = train_tree(tree, space, bundle, device=dev, seed=space.seed, progress=progress)
    rows = compare_rows(results, baselines, space)
    print(format_table(COMPARE_HEADERS, rows))
    summary = {
        "space": space.name,
        "device": str(dev),
        "trees": {label: {**r.to_dict(), "delta_m_test": row[-1]} for (label, r), row in zip(results.items(), rows)},
        "seconds": time.perf_counter() - start,
    }
    atomic_write_text(Path(out) / "demo.json", json.dumps(summary, indent=1))
    print(f"wrote {Path(out) / 'demo.json'} in {summary['seconds']:.0f}s")
    return summary
