"""A surrogate of trained groupings: what each partner does to each task, fitted to trained trees.

Every trained tree that splits the tasks into groups tells, for each task i, how i fares beside
its group mates. The surrogate explains task i's term (``mtnas.search._scores``) in tree c as

    y_i(c) = a_i + sum_{j in group of i in c, j != i} h_ij

an additive harm (or help) h_ij of each partner, as Standley et al. (ICML 2020) estimate a group
from trained pairs. Here the pairs are never trained alone: the surrogate is fitted (ridge
regression, task by task) to whatever trees the search trained, as Li, Sharma and Zhang fit task
affinities to trained subsets ("Identification of Negative Transfers in Multitask Learning Using
Surrogate Models", TMLR 2023). Each trained tree adds T observations, so a handful of trees
separates the partners that matter. Pairs no tree has separated keep their prior: a small multiple
of the tasks' gradient agreement (``mtnas.search._gradients``), which orders otherwise equal
groupings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtnas.search._fixed_routing import agglomerative, best_partition, groups_of

__all__ = ["PairSurrogate", "labels_of"]


def labels_of(tasks: Sequence[str], groups: Sequence[Sequence[str]]) -> np.ndarray:
    """(T,) the group index of each task."""
    where = {t: g for g, group in enumerate(groups) for t in group}
    return np.array([where[t] for t in tasks])


@dataclass(frozen=True)
class PairSurrogate:
    """Fitted partner effects.

    Attributes:
        tasks: the task names.
        base: (T,) ``a_i``, each task's term with no partner.
        harm: (T, T) ``h_ij``, what partner j adds to task i's term (0 on the diagonal).
    """

    tasks: tuple[str, ...]
    base: np.ndarray
    harm: np.ndarray

    @classmethod
    def fit(cls, tasks: Sequence[str], groupings: Sequence[Sequence[Sequence[str]]], terms: Sequence[Sequence[float]],
            prior: np.ndarray, ridge: float = 1.0) -> PairSurrogate:
        """Fit to trained groupings (each a partition of ``tasks``) and their per-task terms
        ((N, T), in ``tasks`` order); ``prior`` (T, T) is the harm a pair keeps where no grouping
        separates it, ``ridge`` the weight that pulls the fit towards it."""
        t = len(tasks)
        labels = np.array([labels_of(tasks, g) for g in groupings])  # (N, T)
        y = np.asarray(terms, dtype=float)  # (N, T)
        base, harm = np.zeros(t), np.zeros((t, t))
        for i in range(t):
            others = [j for j in range(t) if j != i]
            x = (labels[:, others] == labels[:, [i]]).astype(float)  # (N, T-1): partner j shares i's group
            x1 = np.hstack([np.ones((len(x), 1)), x])
            p = np.concatenate([[0.0], prior[i, others]])
            penalty = ridge * np.eye(t)
            penalty[0, 0] = 1e-6  # the intercept is not pulled
            coef = np.linalg.solve(x1.T @ x1 + penalty, x1.T @ y[:, i] + penalty @ p)
            base[i], harm[i, others] = coef[0], coef[1:]
        return cls(tuple(tasks), base, harm)

    def task_estimates(self, labels: np.ndarray) -> np.ndarray:
        """(T,) each task's estimated term in the grouping ``labels``."""
        same = labels[:, None] == labels[None, :]
        np.fill_diagonal(same, False)
        return self.base + (self.harm * same).sum(1)

    def estimate(self, labels: np.ndarray) -> float:
        """The grouping's estimated mean term."""
        return float(self.task_estimates(labels).mean())

    def best(self, k: int, exclude: set[tuple[tuple[str, ...], ...]] = frozenset(), tries: int = 8
             ) -> tuple[tuple[str, ...], ...] | None:
        """The k-grouping of highest estimate that is not in ``exclude`` (canonical groupings), or None."""
        from mtnas.search._fixed_routing import _count_partitions, _partitions

        t = len(self.tasks)
        if k > t:
            return None
        if _count_partitions(t, k) <= 20_000:
            ranked = sorted(_partitions(t, k), key=lambda lab: -self.estimate(np.asarray(lab)))
            for lab in ranked:
                g = canonical(groups_of(self.tasks, np.asarray(lab)), self.tasks)
                if g not in exclude:
                    return g
            return None
        sym = -(self.harm + self.harm.T)
        start = agglomerative(sym - sym.min(), k)
        for _ in range(tries):
            g = canonical(groups_of(self.tasks, best_partition(self.estimate, start, k)), self.tasks)
            if g not in exclude:
                return g
            start = np.random.default_rng(len(exclude) + _).integers(0, k, t)
        return None


def canonical(groups: Sequence[Sequence[str]], tasks: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Groups with tasks in ``tasks`` order, ordered by their first task."""
    order = {t: i for i, t in enumerate(tasks)}
    inner = [tuple(sorted(g, key=order.__getitem__)) for g in groups if g]
    return tuple(sorted(inner, key=lambda g: order[g[0]]))
