"""Scores of trained trees against each other, without single-task baselines.

Delta-m measures each task's relative change over a reference network. A search that compares
trees among themselves needs no trained single-task networks (T more trainings): each task's
reference is the best value any tree it compared reached on that task (``references``), so a
task's term is how far a tree falls behind the best sharing seen for it, in percent of that value.
Like delta-m it is a mean of relative changes, so no task's loss scale enters a decision; on the
exhaustive trained ranking it orders trees as delta-m does (``benchmarks/README.md``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from mtnas.nn import get_metric
from mtnas.space import SearchSpace
from mtnas.train import TaskMetrics, per_task_delta

__all__ = ["references", "relative_scores", "task_terms"]


def references(results: Sequence[TaskMetrics], space: SearchSpace) -> dict[str, dict[str, float]]:
    """Each task's best value of each of its metrics over ``results`` (validation metrics)."""
    out: dict[str, dict[str, float]] = {}
    for task in space.tasks:
        seen = [r[task.name] for r in results if task.name in r]
        if not seen:
            continue
        out[task.name] = {}
        for m in task.metrics:
            better = max if get_metric(m, task.kind).higher_is_better else min
            out[task.name][m] = better(s[m] for s in seen)
    return out


def task_terms(metrics: TaskMetrics, refs: Mapping[str, Mapping[str, float]], space: SearchSpace) -> dict[str, float]:
    """Each task's relative change (%) of ``metrics`` against the references (0 = the best seen)."""
    return per_task_delta(metrics, refs, space)


def relative_scores(results: Sequence[TaskMetrics], space: SearchSpace) -> list[float]:
    """Each result's mean task term against the references of all of them (0 = best on every task)."""
    refs = references(results, space)
    return [statistics.mean(task_terms(r, refs, space).values()) for r in results]
