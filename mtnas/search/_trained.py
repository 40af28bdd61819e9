"""Search methods that decide the sharing from trained evidence: ``trained`` (the default) and
``pairs`` (Standley et al. 2020).

Signals taken in one gradient step, early, on a shared network (lookahead affinity, gradient
cosines) do not predict what training to the end says: a task that keeps another from learning,
a conflict at an early layer that splitting does not cure, and a 40 x 40 matrix measured a few
times all mislead them (``benchmarks/README.md`` has the measurements). These methods compare
trained networks instead, each trained at the proxy budget exactly as a study's trial is and
scored by delta-m, so no task's loss scale decides its place (``mtnas.search._evidence``).

``trained``:

1. Evidence on the tasks: every pair's all-shared network (``mtnas.search._pairs``; up to
   ``PAIR_TASKS`` tasks), whose deltas estimate any grouping by adding up the harm of partners.
   With more tasks (too many pairs to train) the grouping of a supernet search with the
   ``affinity`` routing method is the proposal instead (``SupernetProposal``), and the trained
   steps below decide.
2. Candidates, trained: the all-shared tree and, for k = 2..K groups, the best k-grouping of the
   estimate split at every layer that may branch, so the split layer is chosen by training.
3. A local search from the best candidate (``mtnas.search._local``): one task moved, two groups
   merged, one group split, the split one layer shallower or deeper; the moves the estimate
   ranks highest are trained, the others skipped.
4. The choice (``parsimonious``): the best-scoring trees are trained again with a second seed,
   and the cheapest whose mean score is within training's noise of the best is the tree found.

Every choice maximises ``delta-m - gain_per_cost * (relative cost - 1)``: a tree must buy
``search.gain_per_cost`` points of delta-m for each all-shared network's worth of extra cost
(``search.cost_metric``), the trade-off the study's trials sample to fill the front.

``pairs`` is Standley et al.'s selection as they describe it: the pairs' estimates with their
average over a task's partners, one network per group (the split at the first layer that may
branch) and the number of groups chosen by the same trade-off, with no further training.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtnas.core import ConfigError
from mtnas.data import DatasetBundle
from mtnas.search._differentiable import search_supernet
from mtnas.search._evidence import Evaluated, Evidence
from mtnas.search._local import Split, climb, neighbours, split_of
from mtnas.search._methods import Affinity
from mtnas.search._pairs import PAIR_TASKS, pair_model
from mtnas.search._result import SearchResult
from mtnas.search._routing import effective_branches
from mtnas.space import SearchConfig, SearchSpace
from mtnas.tree import BranchingTree

__all__ = ["PairsSelection", "TrainedSearch", "grouping_model"]


class SupernetProposal:
    """The grouping a supernet search proposes (for spaces with too many tasks to train every pair):
    its first split's groups, with no estimate to rank other groupings by."""

    def __init__(self, groups: tuple[tuple[str, ...], ...]) -> None:
        self.groups = groups

    def proposals(self, max_groups: int) -> list[tuple[tuple[str, ...], ...]]:
        return [self.groups] if 1 < len(self.groups) <= max_groups else []

    def estimate(self, groups: Sequence[Sequence[str]]) -> float:
        return 0.0

    def halves(self, group: tuple[str, ...]) -> None:
        return None


def grouping_model(evidence: Evidence, *, seed: int, hparams: SearchConfig,
                   branches: int | Sequence[int] | None) -> Any:
    """What proposes groupings: trained pairs when there are at most ``PAIR_TASKS`` tasks, else the
    first split of a supernet search with the ``affinity`` routing method."""
    if len(evidence.space.tasks) <= PAIR_TASKS:
        return pair_model(evidence)
    found = search_supernet(evidence.space, evidence.bundle, Affinity(), seed=seed, hparams=hparams,
                            device=evidence.device, branches=branches)
    return SupernetProposal(found.tree.first_split() or (evidence.space.task_names,))


def _limits(space: SearchSpace, branches: int | Sequence[int] | None) -> tuple[list[int], tuple[int, ...]]:
    """The layers that may branch and the most groups each layer may hold."""
    if branches is None:
        per_layer = space.branches_per_layer
    elif isinstance(branches, int):
        per_layer = (min(branches, len(space.tasks)),) * space.num_layers
    else:
        per_layer = tuple(branches)
    k = effective_branches(per_layer, space.can_branch)
    return [layer for layer in range(space.num_layers) if space.can_branch[layer] and k[layer] > 1], k


#: The second seed of the finalists' trainings is the evaluation seed plus this.
AGAIN_SEED = 7919


def parsimonious(evidence: Evidence, again: Evidence, gain_per_cost: float, finalists: int
                 ) -> tuple[Evaluated, float]:
    """The cheapest of the best-scoring trees whose score is within one standard error of the best.

    The ``finalists`` best-scoring trees are trained again with a second seed (``again``); the
    spread between the two seeds' delta-m over those trees gives the noise of one training
    (``sigma = sqrt(mean(d^2) / 2)`` for the differences d), and the choice is the cheapest tree
    whose two-seed mean score is within ``sigma`` of the best (the one-standard-error rule of model
    selection: Breiman, Friedman, Olshen and Stone, "Classification and Regression Trees", 1984).
    A tree that one training favours by less than training's own noise does not buy its extra cost.
    Returns the tree (scored at the evaluation seed) and ``sigma``.
    """
    pool = sorted(evidence.evaluated(), key=lambda e: -e.score(gain_per_cost))[:finalists]
    second = again.evaluate_all([e.tree for e in pool])
    diffs = np.array([a.delta_m - b.delta_m for a, b in zip(pool, second)])
    se = float(np.sqrt(np.mean(diffs ** 2) / 2)) if len(pool) > 1 else 0.0
    means = [(a.score(gain_per_cost) + b.score(gain_per_cost)) / 2 for a, b in zip(pool, second)]
    best = max(means)
    close = [a for a, m in zip(pool, means) if m >= best - se]
    return min(close, key=lambda e: (e.cost, -e.score(gain_per_cost))), se


def _history(evidence: Evidence, path: Sequence[Evaluated], gain_per_cost: float, again: Evidence,
             noise: float) -> dict[str, np.ndarray]:
    """What the search trained, for ``candidates.json``: every tree with its delta-m, cost and
    score, its delta-m at the second seed where it was trained again, and the standard error."""
    known = evidence.evaluated()
    on_path = {e.tree.key: i for i, e in enumerate(path)}
    second = {e.tree.key: e.delta_m for e in again.evaluated()}
    return {
        "trees": np.array([e.tree.describe() for e in known]),
        "delta_m": np.array([e.delta_m for e in known]),
        "cost": np.array([e.cost for e in known]),
        "score": np.array([e.score(gain_per_cost) for e in known]),
        "step": np.array([on_path.get(e.tree.key, -1) for e in known]),
        "delta_m_again": np.array([second.get(e.tree.key, np.nan) for e in known]),
        "noise": np.full(len(known), noise),
    }


class TrainedSearch:
    """Grouping evidence, trained candidates and a trained local search (module docstring)."""

    kind = "trained"
    uses = ("gain_per_cost",)
    moves = 3  # the one-task moves trained per step: those the estimate ranks highest
    finalists = 4  # the best-scoring trees trained again with a second seed for the one-SE choice

    def search(self, space: SearchSpace, bundle: DatasetBundle, *, seed: int, hparams: SearchConfig,
               device: torch.device, branches: int | Sequence[int] | None = None, progress: bool = False,
               eval_seed: int | None = None) -> SearchResult:
        start = time.perf_counter()
        evidence = Evidence(space, bundle, seed=seed if eval_seed is None else eval_seed, device=device,
                            progress=progress)
        model = grouping_model(evidence, seed=seed, hparams=hparams, branches=branches)
        branchable, limit = _limits(space, branches)
        tasks, layers, lam = space.task_names, space.num_layers, hparams.gain_per_cost

        def score(e: Evaluated) -> float:
            return e.score(lam)

        first = [Split(None, (tasks,))]
        for groups in model.proposals(max(limit)):
            first += [Split(s, groups) for s in branchable if len(groups) <= limit[s]]
        best = max(evidence.evaluate_all([s.tree(tasks, layers) for s in dict.fromkeys(first)]), key=score)

        def candidates(current: Evaluated) -> list[BranchingTree]:
            found = neighbours(split_of(current.tree), branchable=branchable, max_groups=limit, halves=model.halves)
            moves = sorted(found.pop("move"), key=lambda s: -model.estimate(s.groups))[: self.moves]
            kept = moves + [s for kind in found.values() for s in kind]
            return list(dict.fromkeys(s.tree(tasks, layers) for s in kept))

        best, path = climb(best, evidence.evaluate_all, candidates, score)
        again = Evidence(space, bundle, seed=evidence.seed + AGAIN_SEED, device=device, progress=progress)
        choice, noise = parsimonious(evidence, again, lam, self.finalists)
        return SearchResult(tree=choice.tree, derived=None, routing={}, weights=evidence.weights(choice.tree),
                            seconds=time.perf_counter() - start, hparams=hparams,
                            candidates=_history(evidence, path, lam, again, noise))


class PairsSelection:
    """Standley et al.'s pair-based selection (module docstring): estimates only, no trained trees."""

    kind = "trained"
    uses = ("gain_per_cost",)

    def search(self, space: SearchSpace, bundle: DatasetBundle, *, seed: int, hparams: SearchConfig,
               device: torch.device, branches: int | Sequence[int] | None = None, progress: bool = False,
               eval_seed: int | None = None) -> SearchResult:
        if len(space.tasks) > PAIR_TASKS:
            raise ConfigError(f"{space.name or 'space'}.search.method: 'pairs' trains a network for every pair of "
                              f"tasks, {len(space.tasks) * (len(space.tasks) - 1) // 2:,} for {len(space.tasks)} tasks; "
                              f"it takes at most {PAIR_TASKS} tasks (the default 'trained' takes any number)")
        start = time.perf_counter()
        evidence = Evidence(space, bundle, seed=seed if eval_seed is None else eval_seed, device=device,
                            progress=progress)
        model = pair_model(evidence, mode="mean")
        branchable, limit = _limits(space, branches)
        tasks, layers = space.task_names, space.num_layers
        options = [Split(None, (tasks,))]
        if branchable:
            s = branchable[0]
            options += [Split(s, model.best_groups(k)) for k in range(2, limit[s] + 1)]
        trees = [o.tree(tasks, layers) for o in options]
        values = [model.estimate(o.groups) - hparams.gain_per_cost * (evidence.relative_cost(t) - 1)
                  for o, t in zip(options, trees)]
        tree = trees[int(np.argmax(values))]
        return SearchResult(tree=tree, derived=None, routing={}, weights=evidence.weights(tree),
                            seconds=time.perf_counter() - start, hparams=hparams)
