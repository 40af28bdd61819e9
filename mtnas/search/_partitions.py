"""Partitions of tasks into groups, and the best one by a score: the one routine every method uses.

A partition of T tasks into k groups is written as labels (T,) in 0..k-1. The search for the best
partition by a score (TAG's total affinity, the gradient agreement within groups, a pair model's
estimate) is exact over every partition while there are at most ``EXHAUSTIVE`` of them (the
Stirling number S(T, k): 7 for 4 tasks in 2 groups, 3025 for 9 in 3; TAG's branch and bound is
exact too), else a hill climb by single-task moves from an average-linkage clustering of a
distance between the tasks (``climb``), restarted from random labels when the partition found is
one the caller excludes.

Groups are written canonically (``canonical``): each group's tasks in the space's order, the
groups ordered by their first task, so a partition compares equal whatever labels gave it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np

__all__ = [
    "EXHAUSTIVE", "Groups", "agglomerative", "all_partitions", "best_partition", "canonical", "climb",
    "count_partitions", "groups_of", "labels_of", "partition_labels",
]

Groups = tuple[tuple[str, ...], ...]
#: Up to this many partitions of the tasks into k groups, ``best_partition`` tries them all.
EXHAUSTIVE = 20_000


def partition_labels(t: int, k: int) -> list[tuple[int, ...]]:
    """Every partition of ``t`` items into exactly ``k`` groups, as restricted growth strings (the
    first item in group 0, each later item in a group already opened or the next one)."""
    out: list[tuple[int, ...]] = []

    def grow(prefix: list[int], used: int) -> None:
        if len(prefix) == t:
            if used == k:
                out.append(tuple(prefix))
            return
        if k - used > t - len(prefix):  # not enough items left to open the missing groups
            return
        for g in range(min(used + 1, k)):
            grow(prefix + [g], max(used, g + 1))

    grow([], 0)
    return out


def count_partitions(t: int, k: int) -> int:
    """The number of partitions of ``t`` items into ``k`` groups: the Stirling number S(t, k)."""
    row = [1] + [0] * k
    for _ in range(t):
        row = [0] + [row[j - 1] + j * row[j] for j in range(1, k + 1)]
    return row[k]


def groups_of(tasks: Sequence[str], labels: np.ndarray) -> Groups:
    """The groups of ``labels`` (T,), canonical (``canonical``)."""
    out: dict[int, list[str]] = {}
    for task, g in zip(tasks, labels):
        out.setdefault(int(g), []).append(task)
    return tuple(tuple(g) for g in out.values())


def labels_of(tasks: Sequence[str], groups: Sequence[Sequence[str]]) -> np.ndarray:
    """(T,) the group index of each task."""
    where = {t: g for g, group in enumerate(groups) for t in group}
    return np.array([where[t] for t in tasks])


def canonical(groups: Sequence[Sequence[str]], tasks: Sequence[str]) -> Groups:
    """Groups with tasks in ``tasks`` order, ordered by their first task."""
    order = {t: i for i, t in enumerate(tasks)}
    inner = [tuple(sorted(g, key=order.__getitem__)) for g in groups if g]
    return tuple(sorted(inner, key=lambda g: order[g[0]]))


def all_partitions(tasks: Sequence[str], k: int) -> list[Groups]:
    """Every partition of ``tasks`` into exactly ``k`` groups."""
    return [groups_of(tuple(tasks), np.asarray(labels)) for labels in partition_labels(len(tasks), k)]


def agglomerative(dist: np.ndarray, k: int) -> np.ndarray:
    """Average-linkage clustering of a (T, T) distance matrix into ``k`` groups: labels (T,)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if k <= 1 or len(dist) <= 1:
        return np.zeros(len(dist), dtype=int)
    d = (dist + dist.T) / 2
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(np.clip(d, 0.0, None), checks=False), method="average")
    return fcluster(z, t=k, criterion="maxclust") - 1


def climb(score: Callable[[np.ndarray], float], labels: np.ndarray, k: int, sweeps: int = 20) -> np.ndarray:
    """Hill climbing by single-task moves from ``labels``: each sweep moves every task to the group
    (of ``k``) that raises ``score`` most, never emptying a group, until a sweep changes nothing."""
    labels = np.asarray(labels).copy()
    best = score(labels)
    for _ in range(sweeps):
        improved = False
        for t in range(len(labels)):
            for g in range(k):
                if g == labels[t]:
                    continue
                trial = labels.copy()
                trial[t] = g
                if len(set(trial)) < len(set(labels)):  # keep k groups
                    continue
                s = score(trial)
                if s > best + 1e-12:
                    labels, best, improved = trial, s, True
        if not improved:
            break
    return labels


def best_partition(score: Callable[[np.ndarray], float], k: int, distance: np.ndarray, *,
                   exclude: Callable[[np.ndarray], bool] | Collection[Groups] | None = None,
                   tasks: Sequence[str] | None = None, tries: int = 1, seed: int = 0) -> np.ndarray | None:
    """The labels (T,) of the partition into ``k`` groups of highest ``score(labels)``, T the size
    of ``distance`` (T, T).

    Exact over every partition when there are at most ``EXHAUSTIVE`` (ties go to the first in
    ``partition_labels`` order); else ``climb`` from the average-linkage clustering of ``distance``.
    ``exclude`` (a predicate on labels, or canonical groupings of ``tasks``) names partitions not to
    return: the exact search returns the best one left, the climb restarts from random labels
    (seeded ``seed``, ``seed + 1``, ...) up to ``tries`` times. None when every try was excluded.
    """
    t = len(distance)
    if not 1 <= k <= t:
        raise ValueError(f"a partition of {t} tasks has 1 to {t} groups, not {k}")
    if exclude is not None and not callable(exclude):
        if tasks is None:
            raise ValueError("excluded groupings name tasks: pass tasks")
        excluded = exclude
        exclude = lambda labels: canonical(groups_of(tasks, labels), tasks) in excluded  # noqa: E731
    if count_partitions(t, k) <= EXHAUSTIVE:
        ranked = (np.asarray(labels) for labels in partition_labels(t, k))
        if exclude is None:
            return max(ranked, key=score)
        for labels in sorted(ranked, key=lambda lab: -score(lab)):
            if not exclude(labels):
                return labels
        return None
    start = agglomerative(distance, k)
    for attempt in range(tries):
        labels = climb(score, start, k)
        if exclude is None or not exclude(labels):
            return labels
        start = np.random.default_rng(seed + attempt).integers(0, k, t)
    return None
