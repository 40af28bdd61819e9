"""Train one fixed tree and report its metrics and cost."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mtnas.data import DatasetBundle
from mtnas.model import BranchedNet, Cost, tree_cost
from mtnas.space import SearchSpace
from mtnas.train._engine import train_model
from mtnas.train._tasks import TaskMetrics
from mtnas.train._trackers import TrackedRun
from mtnas.tree import BranchingTree

__all__ = ["TreeResult", "mean_metric", "train_tree", "train_tree_model"]


@dataclass(frozen=True)
class TreeResult:
    """A trained tree: its cost, per-task metrics on val and test, and the training time."""

    tree: BranchingTree
    cost: Cost
    val: TaskMetrics
    test: TaskMetrics
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree": self.tree.to_dict(),
            "cost": self.cost.to_dict(),
            "val": self.val,
            "test": self.test,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TreeResult:
        return cls(
            tree=BranchingTree.from_dict(data["tree"]),
            cost=Cost(**data["cost"]),
            val={t: dict(m) for t, m in data["val"].items()},
            test={t: dict(m) for t, m in data["test"].items()},
            seconds=float(data["seconds"]),
        )


def mean_metric(metrics: TaskMetrics, name: str = "accuracy") -> float:
    """Mean of metric ``name`` over the tasks that report it (e.g. mean accuracy)."""
    values = [m[name] for m in metrics.values() if name in m]
    return sum(values) / len(values) if values else float("nan")


def train_tree(
    tree: BranchingTree,
    space: SearchSpace,
    bundle: DatasetBundle,
    *,
    device: torch.device,
    seed: int,
    epochs: int | None = None,
    progress: bool = False,
    desc: str | None = None,
    monitor: Callable[[int, TaskMetrics], None] | None = None,
) -> TreeResult:
    """Build ``tree`` with fresh weights (seeded), train it with the space's budget, evaluate it.

    ``monitor`` sees the validation metrics after each epoch (see ``train_model``).
    """
    return train_tree_model(tree, space, bundle, device=device, seed=seed, epochs=epochs, progress=progress,
                            desc=desc, monitor=monitor)[0]


def train_tree_model(
    tree: BranchingTree,
    space: SearchSpace,
    bundle: DatasetBundle,
    *,
    device: torch.device,
    seed: int,
    epochs: int | None = None,
    progress: bool = False,
    desc: str | None = None,
    monitor: Callable[[int, TaskMetrics], None] | None = None,
) -> tuple[TreeResult, BranchedNet]:
    """``train_tree``, also returning the trained network."""
    torch.manual_seed(seed)
    model = BranchedNet.from_space(tree, space)
    result = train_model(
        model, space, bundle, device=device, seed=seed, epochs=epochs, progress=progress,
        desc=desc or tree.describe()[:40], monitor=monitor, track=[TrackedRun.of_tree(tree)],
    )
    return TreeResult(tree, tree_cost(tree, space), result.val, result.test, result.seconds), model
