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
2. The grouping, where groupings can be told apart: split at the first layer that may branch
   (each group its own network, as in Standley et al. and TAG) and trained for
   ``SearchSpace.grouping_epochs`` (a third of the budget), the best k-grouping of the estimate
   for k = 2..K is trained, then a local search over groupings there (``mtnas.search._local``: one
   task moved, two groups merged, one group split; the moves the estimate ranks highest are
   trained, the others skipped). Groupings differ most where the split is early and training
   short: early in training, sharing with the tasks that read the same features speeds a task up
   and sharing with the others slows it down; split late or trained to the end, related tasks
   have learned their features anyway (``digit_gratings``' ``parity`` loses 0-2% beside the
   grating tasks after a whole training, as much as beside the digit tasks; after a third of it,
   6-16% against 2-3%), so groupings are compared early and short and the tree is decided at the
   full budget. The pairs (step 1) train at the grouping budget too.
3. The split layer, by cost, at the full budget (``SearchSpace.proxy_epochs``): the grouping
   split at every layer that may branch, and the all-shared tree, trained (``parsimonious``), each
   again with a second seed; the cheapest whose mean score is within training's noise of the best
   is the tree found.

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
from dataclasses import replace
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

    ranks_moves = False  # no estimate to tell a good one-task move from a bad one

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


def _history(evidence: Evidence, early: Evidence | None, path: Sequence[Evaluated], gain_per_cost: float,
             again: Evidence, noise: float) -> dict[str, np.ndarray]:
    """What the search trained, for ``candidates.json``: every tree with the epochs it was trained
    for, its delta-m, cost and score, its delta-m at the second seed where it was trained again,
    its place on the grouping search's path, and the noise the choice allowed for."""
    grouping = early.evaluated() if early is not None else []
    final = evidence.evaluated()
    on_path = {e.tree.key: i for i, e in enumerate(path)}
    second = {e.tree.key: e.delta_m for e in again.evaluated()}
    known = grouping + final
    return {
        "trees": np.array([e.tree.describe() for e in known]),
        "epochs": np.array([early.proxy.training.epochs] * len(grouping) + [evidence.proxy.training.epochs] * len(final)),
        "delta_m": np.array([e.delta_m for e in known]),
        "cost": np.array([e.cost for e in known]),
        "score": np.array([e.score(gain_per_cost) for e in known]),
        "step": np.array([on_path.get(e.tree.key, -1) for e in grouping] + [-1] * len(final)),
        "delta_m_again": np.array([np.nan] * len(grouping) + [second.get(e.tree.key, np.nan) for e in final]),
        "noise": np.full(len(known), noise),
    }


class TrainedSearch:
    """Grouping evidence, then the grouping and the split layer decided by trained trees (module docstring)."""

    kind = "trained"
    uses = ("gain_per_cost",)
    moves = 3  # the one-task moves trained per step: those the estimate ranks highest

    def search(self, space: SearchSpace, bundle: DatasetBundle, *, seed: int, hparams: SearchConfig,
               device: torch.device, branches: int | Sequence[int] | None = None, progress: bool = False,
               eval_seed: int | None = None) -> SearchResult:
        start = time.perf_counter()
        eval_seed = seed if eval_seed is None else eval_seed
        space = replace(space, search=hparams)
        evidence = Evidence(space, bundle, seed=eval_seed, device=device, progress=progress)
        branchable, limit = _limits(space, branches)
        tasks, layers, lam = space.task_names, space.num_layers, hparams.gain_per_cost
        path: list[Evaluated] = []
        early: Evidence | None = None
        trees = [BranchingTree.all_shared(tasks, layers)]
        if branchable:
            grouping_space = replace(space, search=replace(hparams, proxy_epochs=space.grouping_epochs))
            early = Evidence(grouping_space, bundle, seed=eval_seed, device=device, progress=progress)
            model = grouping_model(early, seed=seed, hparams=hparams, branches=branches)
            groups, path = self._grouping(early, model, branchable[0], limit, lam)
            if groups is not None:
                trees += [Split(s, groups).tree(tasks, layers) for s in branchable if len(groups) <= limit[s]]
        evidence.evaluate_all(trees)
        again = Evidence(space, bundle, seed=eval_seed + AGAIN_SEED, device=device, progress=progress)
        choice, noise = parsimonious(evidence, again, trees, lam)
        return SearchResult(tree=choice.tree, derived=None, routing={}, weights=evidence.weights(choice.tree),
                            seconds=time.perf_counter() - start, hparams=hparams,
                            candidates=_history(evidence, early, path, lam, again, noise))

    def _grouping(self, evidence: Evidence, model: Any, layer: int, limit: tuple[int, ...], lam: float
                  ) -> tuple[tuple[tuple[str, ...], ...] | None, list[Evaluated]]:
        """The grouping of highest score split at ``layer`` (the first that may branch, where
        groupings differ most), by trained candidates and a local search over groupings there."""
        space = evidence.space
        tasks, layers = space.task_names, space.num_layers
        first = [Split(layer, g).tree(tasks, layers) for g in model.proposals(limit[layer])]
        if not first:
            return None, []

        def score(e: Evaluated) -> float:
            return e.score(lam)

        def candidates(current: Evaluated) -> list[BranchingTree]:
            found = neighbours(split_of(current.tree), branchable=[layer], max_groups=limit, halves=model.halves)
            moves = sorted(found.pop("move"), key=lambda s: -model.estimate(s.groups))[: self.moves]
            if not model.ranks_moves:  # unranked guesses would cost a training each: none are tried
                moves = []
            kept = [s for s in moves + found["merge"] + found["split"] if s.layer is not None]  # groupings only
            return list(dict.fromkeys(s.tree(tasks, layers) for s in kept))

        best = max(evidence.evaluate_all(first), key=score)
        best, path = climb(best, evidence.evaluate_all, candidates, score)
        return best.tree.first_split(), path


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
