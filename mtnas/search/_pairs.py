"""What each partner does to each task: one additive model of groupings, from trained pairs or
fitted to trained trees.

Standley, Zamir, Chen, Guibas, Malik and Savarese, "Which Tasks Should Be Learned Together in
Multi-task Learning?", ICML 2020, train a network for every pair of tasks and estimate a larger
group from its pairs. The model here explains task i's term in a grouping c as

    y_i(c) = a_i + sum_{j in group of i in c, j != i} h_ij

an additive harm (or help) ``h_ij`` of each partner j, and a grouping's estimate is the mean over
its tasks. Two ways give it its numbers:

* **Trained pairs** (``pairs``, ``mtnas.search._trained.pair_model``): every pair's all-shared
  network trained for the search's budget; ``h_ij`` is task i's delta-m (%) beside j against its
  own network, so no loss scale enters, and ``a_i`` is 0. Standley et al. average a task's pairs
  instead of adding them (``mode="mean"``, the ``pairs`` method); added up (``sum``), the harm of
  several partners adds up, and the mean cannot tell one harmful partner from three
  (``benchmarks/README.md``).
* **Fitted to trained trees** (:meth:`PairModel.fit`, the ``trained`` method's surrogate): the
  pairs are never trained alone; the model is fitted (ridge regression, task by task) to whatever
  trees the search trained, as Li, Sharma and Zhang fit task affinities to trained subsets
  ("Identification of Negative Transfers in Multitask Learning Using Surrogate Models", TMLR
  2023). Each trained tree adds T observations, so a handful of trees separates the partners that
  matter. Pairs no tree has separated keep their prior: a small multiple of the tasks' gradient
  agreement (``mtnas.search._gradients``), which orders otherwise equal groupings.

Its best grouping of each size is ``mtnas.search._partitions.best_partition`` of its estimate.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from mtnas.search._partitions import Groups, best_partition, canonical, groups_of, labels_of

__all__ = ["PAIR_TASKS", "PairModel"]

#: Up to this many tasks every pair is trained (66 pair networks); above it, too many to train.
PAIR_TASKS = 12
#: How a task's partners add up: their sum (the additive model), or their mean (Standley et al.).
MODES = ("sum", "mean")


@dataclass(frozen=True)
class PairModel:
    """Partner effects and the grouping estimates built from them (module docstring).

    Attributes:
        tasks: the task names, in the space's order.
        harm: (T, T) ``h_ij``, what partner j adds to task i's term (0 on the diagonal): trained
            pairs' deltas, or fitted.
        base: (T,) ``a_i``, each task's term with no partner (None: 0, as trained pairs have it).
        mode: ``sum`` or ``mean`` of a task's partners within its group.
    """

    tasks: tuple[str, ...]
    harm: np.ndarray
    base: np.ndarray | None = None
    mode: str = "sum"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: {self.mode!r}, expected one of {', '.join(MODES)}")
        if self.base is None:
            object.__setattr__(self, "base", np.zeros(len(self.tasks)))

    @classmethod
    def fit(cls, tasks: Sequence[str], groupings: Sequence[Sequence[Sequence[str]]], terms: Sequence[Sequence[float]],
            prior: np.ndarray, ridge: float = 1.0) -> PairModel:
        """The additive model fitted to trained groupings (each a partition of ``tasks``) and their
        per-task terms ((N, T), in ``tasks`` order); ``prior`` (T, T) is the harm a pair keeps where
        no grouping separates it, ``ridge`` the weight that pulls the fit towards it."""
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
        return cls(tuple(tasks), harm, base)

    def _score(self, labels: np.ndarray) -> float:
        """The mean estimated term of the grouping ``labels`` (T,)."""
        if self.mode == "sum":
            same = labels[:, None] == labels[None, :]
            np.fill_diagonal(same, False)
            return float((self.base + (self.harm * same).sum(1)).mean())
        total = 0.0
        for i in range(len(labels)):
            mates = np.flatnonzero((labels == labels[i]) & (np.arange(len(labels)) != i))
            if len(mates):
                total += float(self.harm[i, mates].mean())
        return float(self.base.mean()) + total / len(labels)

    def estimate(self, groups: Sequence[Sequence[str]]) -> float:
        """The estimated mean term of a tree whose branches are ``groups`` (delta-m, %, for pairs)."""
        return self._score(labels_of(self.tasks, groups))

    def best(self, k: int, exclude: Collection[Groups] = frozenset(), tries: int = 8) -> Groups | None:
        """The grouping into ``k`` groups of highest estimate that is not in ``exclude`` (canonical
        groupings), or None (more groups than tasks, or every one found excluded)."""
        if k > len(self.tasks):
            return None
        sym = -(self.harm + self.harm.T)  # what a pair costs both tasks: a distance for the climb's start
        labels = best_partition(self._score, k, sym - sym.min() if sym.size else sym, exclude=exclude or None,
                                tasks=self.tasks, tries=tries, seed=len(exclude))
        return None if labels is None else canonical(groups_of(self.tasks, labels), self.tasks)
