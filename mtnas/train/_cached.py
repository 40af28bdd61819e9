"""Trained results in the cache, checked before they are used (``mtnas.core.read_checked``).

A cached result stands in for a training: a trial's delta-m, a search's choice and every
baseline rest on it. So an entry is used only when its checksum matches and its content is what
this space would train: a mapping of the right shape, exactly the expected tasks, every metric
the space reports for each of them, and finite numbers, each within its metric's range (an
accuracy in [0, 1], an error >= 0: ``Metric.bounds``). Anything else is one warning naming the
file, and the result is trained again.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

from mtnas.core import read_checked, short_repr, write_checked
from mtnas.model import Cost
from mtnas.nn import METRICS
from mtnas.space import SearchSpace
from mtnas.train._fixed_tree import TreeResult
from mtnas.train._tasks import TaskMetrics
from mtnas.tree import BranchingTree

__all__ = ["checked_result", "finite", "mapping", "read_result", "write_result"]


def mapping(value: Any, where: str) -> dict:
    """``value`` when it is a JSON object; else a ``ValueError`` naming ``where``."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} is a {type(value).__name__}, expected a mapping")
    return value


def finite(value: Any, where: str) -> float:
    """``value`` as a float when it is a finite real number (not a bool, not text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} is {short_repr(value, 30)}, not a finite number")
    return float(value)


def _same_tasks(found: Collection[str], expected: Collection[str], where: str) -> None:
    if set(found) != set(expected):
        raise ValueError(f"{where} holds tasks {short_repr(sorted(found))}, expected {short_repr(sorted(expected))}")


def _task_metrics(data: Any, tasks: tuple[str, ...], space: SearchSpace, split: str) -> TaskMetrics:
    data = mapping(data, split)
    _same_tasks(data, tasks, split)
    out: TaskMetrics = {}
    for task in tasks:
        values = mapping(data[task], f"{split}.{task}")
        missing = [m for m in space.task(task).metrics if m not in values]
        if missing:
            raise ValueError(f"{split}.{task} lacks the metric {', '.join(missing)}")
        out[task] = {name: _in_range(name, finite(v, f"{split}.{task}.{name}"), f"{split}.{task}.{name}")
                     for name, v in values.items()}
    return out


def _in_range(metric: str, value: float, where: str) -> float:
    """``value`` when the metric can take it (``Metric.bounds``); a metric mtnas does not know passes."""
    if metric in METRICS:
        low, high = METRICS.get(metric).bounds
        if not low <= value <= high:
            raise ValueError(f"{where} is {value:g}, outside the range of {metric} [{low:g}, {high:g}]")
    return value


def checked_result(data: Any, space: SearchSpace, tasks: Collection[str] | None = None) -> TreeResult:
    """A stored ``TreeResult.to_dict()``, checked against ``space``.

    Args:
        data: the stored content.
        space: the resolved space the result was trained on (its tasks and their metrics).
        tasks: the tasks its tree must hold (default: the space's).

    Raises:
        ValueError, KeyError, TypeError, MtnasError: with the reason, when it is not such a result.
    """
    data = mapping(data, "the entry")
    tree = BranchingTree.from_dict(mapping(data["tree"], "tree"))
    _same_tasks(tree.tasks, space.task_names if tasks is None else tasks, "its tree")
    cost = mapping(data["cost"], "cost")
    if set(cost) != {"params", "flops"} or not all(type(v) is int and v >= 0 for v in cost.values()):
        raise ValueError(f"cost is {short_repr(cost)}, expected whole numbers params and flops")
    return TreeResult(
        tree=tree,
        cost=Cost(**cost),
        val=_task_metrics(data["val"], tree.tasks, space, "val"),
        test=_task_metrics(data["test"], tree.tasks, space, "test"),
        seconds=finite(data["seconds"], "seconds"),
    )


def write_result(path: str | Path, result: TreeResult) -> None:
    """Keep ``result`` at ``path`` as a checked entry (:func:`read_result` reads it)."""
    write_checked(path, result.to_dict())


def read_result(path: str | Path, space: SearchSpace) -> TreeResult | None:
    """The result at ``path`` when it is a sound result of ``space``'s tasks; None when it is
    missing, or (with a warning naming the file) damaged or edited."""
    return read_checked(path, lambda data: checked_result(data, space), "trained tree result")
