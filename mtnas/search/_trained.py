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
2. The groupings: for every number of groups k = 2..K, the partition of highest estimate. The
   pairs train for the short budget (``SearchSpace.grouping_epochs``, a third of the whole) and
   for the whole one, and the two estimates are added, each in units of its own mean magnitude
   (``combined_pairs``): early in training, sharing with the tasks that read the same features
   speeds a task up and sharing with the others slows it down, but a slow task looks harmed by
   everyone; trained to the end, the slow task has learned, but related tasks have learned their
   features anyway and barely tell their partners apart. Each budget corrects the other's blind
   spot (the measurements: ``benchmarks/README.md``, third round).
3. The number of groups and the split layer, at the full budget (``SearchSpace.proxy_epochs``):
   each k-grouping split at every layer that may branch, and the all-shared tree, trained with
   two seeds (``parsimonious``); the cheapest tree whose mean score is within training's noise of
   the best is the tree found.

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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from mtnas.core import ConfigError
from mtnas.data import DatasetBundle
from mtnas.search._differentiable import search_supernet
from mtnas.search._evidence import Evaluated, Evidence
from mtnas.search._methods import Affinity
from mtnas.search._pairs import PAIR_TASKS, combined_pairs, pair_model
from mtnas.search._result import SearchResult
from mtnas.search._routing import space_branches
from mtnas.space import SearchConfig, SearchSpace
from mtnas.tree import BranchingTree

__all__ = ["PairsSelection", "TrainedSearch", "grouping_model"]


@dataclass(frozen=True)
class Split:
    """A one-split tree: all tasks share the layers below ``layer``, each group has its own branch
    from ``layer`` on."""

    layer: int
    groups: tuple[tuple[str, ...], ...]

    def tree(self, tasks: Sequence[str], num_layers: int) -> BranchingTree:
        return BranchingTree.from_split_points(tasks, num_layers, {self.layer: self.groups})


class SupernetProposal:
    """The grouping a supernet search proposes (for spaces with too many tasks to train every pair):
    its first split's groups, with no estimate to rank other groupings by."""

    def __init__(self, groups: tuple[tuple[str, ...], ...]) -> None:
        self.groups = groups

    def proposals(self, max_groups: int) -> list[tuple[tuple[str, ...], ...]]:
        return [self.groups] if 1 < len(self.groups) <= max_groups else []


def grouping_model(early: Evidence, evidence: Evidence, *, seed: int, hparams: SearchConfig,
                   branches: int | Sequence[int] | None) -> Any:
    """What proposes groupings: with at most ``PAIR_TASKS`` tasks, every pair trained for the short
    and for the whole budget (``combined_pairs``); else the first split of a supernet search with
    the ``affinity`` routing method."""
    if len(evidence.space.tasks) <= PAIR_TASKS:
        return combined_pairs([pair_model(early), pair_model(evidence)])
    found = search_supernet(evidence.space, evidence.bundle, Affinity(), seed=seed, hparams=hparams,
                            device=evidence.device, branches=branches)
    return SupernetProposal(found.tree.first_split() or (evidence.space.task_names,))


def _limits(space: SearchSpace, branches: int | Sequence[int] | None) -> tuple[list[int], tuple[int, ...]]:
    """The layers that may branch and the most groups each layer may hold."""
    k = space_branches(space, branches)
    return [layer for layer in range(space.num_layers) if space.can_branch[layer] and k[layer] > 1], k


#: The second seed of the final trees' trainings is the evaluation seed plus this.
AGAIN_SEED = 7919


def parsimonious(evidence: Evidence, again: Evidence, trees: Sequence[BranchingTree], gain_per_cost: float
                 ) -> tuple[Evaluated, float]:
    """The cheapest of ``trees`` whose score is within training's noise of the best.

    Every tree is trained again with a second seed (``again``); the spread between the two seeds'
    delta-m gives the noise of one training (``sigma = sqrt(mean(d^2) / 2)`` for the differences
    d), and the choice is the cheapest tree whose two-seed mean score is within ``sigma`` of the
    best (the one-standard-error rule of model selection: Breiman, Friedman, Olshen and Stone,
    "Classification and Regression Trees", 1984). A tree that one training favours by less than
    training's own noise does not buy its extra cost. Returns the tree (its result at the
    evaluation seed) and ``sigma``.
    """
    first = evidence.evaluate_all(trees)
    if len(first) == 1:
        return first[0], 0.0
    second = again.evaluate_all(trees)
    diffs = np.array([a.delta_m - b.delta_m for a, b in zip(first, second)])
    sigma = float(np.sqrt(np.mean(diffs ** 2) / 2))
    means = [(a.score(gain_per_cost) + b.score(gain_per_cost)) / 2 for a, b in zip(first, second)]
    close = [(a.cost, -m, i) for i, (a, m) in enumerate(zip(first, means)) if m >= max(means) - sigma]
    return first[min(close)[2]], sigma


def _history(evidence: Evidence, early: Evidence | None, gain_per_cost: float, again: Evidence,
             noise: float) -> dict[str, np.ndarray]:
    """What the search trained, for ``candidates.json``: every tree of the choice with the epochs it
    was trained for, its delta-m (at both seeds), cost and score, the noise the choice allowed for,
    and how many pair networks the grouping estimate trained (``pairs``)."""
    final = evidence.evaluated()
    second = {e.tree.key: e.delta_m for e in again.evaluated()}
    pairs = max((early.trained if early is not None else 0) + evidence.trained - len(final), 0)
    return {
        "trees": np.array([e.tree.describe() for e in final]),
        "epochs": np.full(len(final), evidence.proxy.training.epochs),
        "delta_m": np.array([e.delta_m for e in final]),
        "cost": np.array([e.cost for e in final]),
        "score": np.array([e.score(gain_per_cost) for e in final]),
        "delta_m_again": np.array([second.get(e.tree.key, np.nan) for e in final]),
        "noise": np.full(len(final), noise),
        "pairs": np.full(len(final), pairs),
    }


class TrainedSearch:
    """Grouping evidence, then the grouping and the split layer decided by trained trees (module docstring)."""

    kind = "trained"
    uses = ("gain_per_cost",)

    def search(self, space: SearchSpace, bundle: DatasetBundle, *, seed: int, hparams: SearchConfig,
               device: torch.device, branches: int | Sequence[int] | None = None, progress: bool = False,
               eval_seed: int | None = None) -> SearchResult:
        start = time.perf_counter()
        eval_seed = seed if eval_seed is None else eval_seed
        space = replace(space, search=hparams)
        evidence = Evidence(space, bundle, seed=eval_seed, device=device, progress=progress)
        branchable, limit = _limits(space, branches)
        tasks, layers, lam = space.task_names, space.num_layers, hparams.gain_per_cost
        early: Evidence | None = None
        trees = [BranchingTree.all_shared(tasks, layers)]
        if branchable:
            grouping_space = replace(space, search=replace(hparams, proxy_epochs=space.grouping_epochs))
            early = Evidence(grouping_space, bundle, seed=eval_seed, device=device, progress=progress)
            model = grouping_model(early, evidence, seed=seed, hparams=hparams, branches=branches)
            for groups in model.proposals(limit[branchable[0]]):
                trees += [Split(s, groups).tree(tasks, layers) for s in branchable if len(groups) <= limit[s]]
        evidence.evaluate_all(trees)
        again = Evidence(space, bundle, seed=eval_seed + AGAIN_SEED, device=device, progress=progress)
        choice, noise = parsimonious(evidence, again, trees, lam)
        return SearchResult(tree=choice.tree, derived=None, routing={}, weights=evidence.weights(choice.tree),
                            seconds=time.perf_counter() - start, hparams=hparams,
                            candidates=_history(evidence, early, lam, again, noise))


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
        options = [((tasks,), BranchingTree.all_shared(tasks, layers))]
        if branchable:
            s = branchable[0]
            options += [(groups, Split(s, groups).tree(tasks, layers))
                        for groups in (model.best_groups(k) for k in range(2, limit[s] + 1))]
        trees = [tree for _, tree in options]
        values = [model.estimate(groups) - hparams.gain_per_cost * (evidence.relative_cost(tree) - 1)
                  for groups, tree in options]
        tree = trees[int(np.argmax(values))]
        return SearchResult(tree=tree, derived=None, routing={}, weights=evidence.weights(tree),
                            seconds=time.perf_counter() - start, hparams=hparams)
