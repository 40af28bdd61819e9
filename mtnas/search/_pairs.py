"""Trained pairs: what sharing one network with one partner does to each task (Standley et al. 2020).

Standley, Zamir, Chen, Guibas, Malik and Savarese, "Which Tasks Should Be Learned Together in
Multi-task Learning?", ICML 2020, train a network for every pair of tasks and estimate a larger
group from its pairs. Here every pair's all-shared network trains at the proxy budget (stacked
under ``torch.vmap``, ``Evidence.subset_deltas``), and ``deltas[i, j]`` is task i's delta-m (%)
beside j: its relative change over its single-task network, so no loss scale enters.

A group's estimate adds the pairs (``sum``): ``est_i(G) = sum_{j in G, j != i} deltas[i, j]``,
and a partition's is the mean over the tasks. Standley et al. average the pairs instead
(``mean``, used by the ``pairs`` method); measured on the suite's pairs the harm of partners adds
up (a digit task beside three grating tasks loses about three times what it loses beside one),
and the mean cannot tell one harmful partner from three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mtnas.search._fixed_routing import _partitions, agglomerative, best_partition, groups_of

__all__ = ["PAIR_TASKS", "PairModel", "all_partitions"]

#: Up to this many tasks every pair is trained (66 pair networks); above it, too many to train.
PAIR_TASKS = 12


@dataclass(frozen=True)
class PairModel:
    """Pairwise trained deltas and the group estimates built from them.

    Attributes:
        tasks: the task names, in the space's order.
        deltas: (T, T) ``deltas[i, j]``: task i's delta-m (%) in the pair network with task j (0 on
            the diagonal).
        mode: ``sum`` or ``mean`` of a task's pairs within its group.
    """

    tasks: tuple[str, ...]
    deltas: np.ndarray
    mode: str = "sum"
    ranks_moves: ClassVar[bool] = True  # its estimate ranks one-task moves

    def _labels_score(self, labels: np.ndarray) -> float:
        total = 0.0
        for i in range(len(labels)):
            mates = np.flatnonzero((labels == labels[i]) & (np.arange(len(labels)) != i))
            if len(mates):
                values = self.deltas[i, mates]
                total += float(values.sum() if self.mode == "sum" else values.mean())
        return total / len(labels)

    def estimate(self, groups: Sequence[Sequence[str]]) -> float:
        """The estimated delta-m (%) of a tree whose branches are ``groups`` (the pairs' estimate)."""
        index = {t: i for i, t in enumerate(self.tasks)}
        labels = np.zeros(len(self.tasks), dtype=int)
        for g, group in enumerate(groups):
            labels[[index[t] for t in group]] = g
        return self._labels_score(labels)

    def best_groups(self, k: int) -> tuple[tuple[str, ...], ...]:
        """The partition into ``k`` groups of highest estimate (every partition when few enough)."""
        if k <= 1:
            return (self.tasks,)
        start = agglomerative(self._distance(), k)
        return groups_of(self.tasks, best_partition(self._labels_score, start, k))

    def proposals(self, max_groups: int) -> list[tuple[tuple[str, ...], ...]]:
        """The best grouping into k groups for every k = 2..``max_groups``."""
        return [self.best_groups(k) for k in range(2, min(max_groups, len(self.tasks)) + 1)]

    def _distance(self) -> np.ndarray:
        """Pair harm as a distance for agglomerative starts: how much the pair costs both tasks."""
        harm = -(self.deltas + self.deltas.T) / 2
        return harm - harm.min() if harm.size else harm


def all_partitions(tasks: Sequence[str], k: int) -> list[tuple[tuple[str, ...], ...]]:
    """Every partition of ``tasks`` into exactly ``k`` groups."""
    return [groups_of(tuple(tasks), np.asarray(labels)) for labels in _partitions(len(tasks), k)]
