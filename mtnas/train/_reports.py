"""Fixed-tree experiments behind ``mtnas train`` and ``mtnas baselines``.

Each function returns a report object that renders as text and as JSON; the CLI only prints it.
A tree is always compared with single-task networks trained for as many epochs as it was (the
baselines are cached per budget), and the report says which. The two reference trees are not
trained twice: the independent tree is the single-task networks themselves and the all-shared
tree is trained with the baselines, so ``--tree independent`` has delta-m 0 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mtnas.core import format_table
from mtnas.space import SearchSpace, load_resolved
from mtnas.train._baselines import SUM_OF_SOLO_LOSSES, Baselines, compute_baselines
from mtnas.train._device import select_device
from mtnas.train._fixed_tree import TreeResult, train_tree
from mtnas.tree import Architecture, BranchingTree, parse_tree_spec

__all__ = ["BaselinesReport", "TrainReport", "compare_rows", "resolve_tree", "run_baselines", "run_train"]


def resolve_tree(spec: str, space: SearchSpace) -> BranchingTree:
    """``all-shared``, ``independent`` or an arch.json path, checked against ``space``."""
    if spec.endswith(".json") or Path(spec).is_file():
        tree = Architecture.load(spec).tree
    else:
        tree = parse_tree_spec(spec, space.task_names, space.num_layers)
    tree.check_against(space.task_names, space.num_layers)
    return tree


def compare_rows(results: dict[str, TreeResult], baselines: Baselines, space: SearchSpace) -> list[list[Any]]:
    """One row per named tree: params, FLOPs, mean test metric per task kind, delta-m (val, test)."""
    rows = []
    for label, r in results.items():
        rows.append(
            [label, r.tree.describe(), r.cost.params, r.cost.flops,
             baselines.delta_m(r, space, "val"), baselines.delta_m(r, space, "test")]
        )
    return rows


COMPARE_HEADERS = ["tree", "sharing", "params", "FLOPs", "delta-m val %", "delta-m test %"]


def _metric_rows(space: SearchSpace, columns: dict[str, dict[str, dict[str, float]]]) -> list[list[Any]]:
    rows = []
    for task in space.tasks:
        for m in task.metrics:
            rows.append([task.name, m] + [col[task.name][m] for col in columns.values()])
    return rows


@dataclass(frozen=True)
class TrainReport:
    """One trained tree beside the single-task baselines."""

    space: SearchSpace
    result: TreeResult
    baselines: Baselines
    reused: str | None = None  # "single-task networks" or "all-shared" when the result is the baselines' own

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            **self.result.to_dict(),
            "epochs": self.space.training.epochs,
            "delta_m": {s: self.baselines.delta_m(self.result, self.space, s) for s in ("val", "test")},
            "single_task": self.baselines.metrics("test"),
            "baselines": {"epochs": self.space.training.epochs, "seed": self.baselines.seed},
            "reused": self.reused,
        }

    def render(self) -> str:
        r = self.result
        table = format_table(
            ["task", "metric", "test", "single-task test"],
            _metric_rows(self.space, {"tree": r.test, "single": self.baselines.metrics("test")}),
        )
        epochs = self.space.training.epochs
        trained = (f"trained in {r.seconds:.1f}s" if self.reused is None else
                   f"the {self.reused} of the baselines (trained in {r.seconds:.1f}s; not trained again)")
        return (
            f"tree: {r.tree.describe()}\n{table}\n"
            f"params {r.cost.params:,}  FLOPs {r.cost.flops:,}  {epochs} epoch{'s' if epochs != 1 else ''}, {trained}\n"
            f"delta-m: {self.baselines.delta_m(r, self.space, 'test'):+.2f}% test, "
            f"{self.baselines.delta_m(r, self.space, 'val'):+.2f}% val, against single-task networks trained for "
            f"{epochs} epoch{'s' if epochs != 1 else ''} (seed {self.baselines.seed})"
        )


@dataclass(frozen=True)
class BaselinesReport:
    """Single-task networks and the all-shared tree."""

    space: SearchSpace
    baselines: Baselines

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            **self.baselines.to_dict(),
            "delta_m_all_shared": {s: self.baselines.delta_m(self.baselines.all_shared, self.space, s) for s in ("val", "test")},
        }

    def render(self) -> str:
        b = self.baselines
        single_params = sum(r.cost.params for r in b.single_task.values())
        single_flops = sum(r.cost.flops for r in b.single_task.values())
        table = format_table(
            ["task", "metric", "single-task test", "all-shared test"],
            _metric_rows(self.space, {"single": b.metrics("test"), "shared": b.all_shared.test}),
        )
        return (
            f"{table}\n"
            f"single-task networks: params {single_params:,}  FLOPs {single_flops:,} (all together)\n"
            f"all-shared: params {b.all_shared.cost.params:,}  FLOPs {b.all_shared.cost.flops:,}  "
            f"delta-m {b.delta_m(b.all_shared, self.space, 'test'):+.2f}% test"
        )


def _with_epochs(space: SearchSpace, epochs: int | None) -> SearchSpace:
    return space if epochs is None else replace(space, training=replace(space.training, epochs=epochs))


def run_train(
    space_arg: str | SearchSpace, tree_spec: str, *, seed: int | None, device: str, epochs: int | None = None,
    progress: bool = True,
) -> TrainReport:
    """Train ``tree_spec`` on the space for ``epochs`` (default: ``training.epochs``) beside
    single-task baselines of that same budget (cached per budget)."""
    space, bundle = load_resolved(space_arg)
    space = _with_epochs(space, epochs)
    tree = resolve_tree(tree_spec, space)
    dev, seed = select_device(device), space.seed if seed is None else seed
    baselines = compute_baselines(space, bundle, device=dev, seed=seed, progress=progress)
    if tree == baselines.all_shared.tree:
        return TrainReport(space, baselines.all_shared, baselines, reused="all-shared tree")
    if tree == BranchingTree.independent(space.task_names, space.num_layers) and \
            space.training.balancing in SUM_OF_SOLO_LOSSES:
        return TrainReport(space, baselines.independent(space), baselines, reused="single-task networks")
    result = train_tree(tree, space, bundle, device=dev, seed=seed, progress=progress)
    return TrainReport(space, result, baselines)


def run_baselines(
    space_arg: str | SearchSpace, *, seed: int | None, device: str, epochs: int | None = None, use_cache: bool = True,
    progress: bool = True,
) -> BaselinesReport:
    space, bundle = load_resolved(space_arg)
    space = _with_epochs(space, epochs)
    dev, seed = select_device(device), space.seed if seed is None else seed
    return BaselinesReport(space, compute_baselines(space, bundle, device=dev, seed=seed, use_cache=use_cache, progress=progress))
