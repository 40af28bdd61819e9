"""Trained evidence: trees trained at the proxy budget and scored by delta-m, remembered.

The trained search methods (``mtnas.search._trained``) decide only on what training says: each
tree they compare is trained from scratch exactly as a study's trial trains it (``train_tree`` on
``proxy_space`` with the evaluation seed) and scored by its validation delta-m against single-task
baselines of the same budget. A search's comparison is therefore the study's comparison, like for
like, and a trial whose tree a search already trained reuses the result instead of training it
again. Delta-m is a mean of per-task relative changes, so no task's loss scale enters a decision.

Results live in memory and on disk (``$MTNAS_CACHE_DIR/trees/<space hash>-seed<S>/<tree key>.json``,
keyed like the baselines: the proxy space's ``training_hash``, which holds the budget and the
loss balancing but not the search settings), so the trials of a study (whatever they sample),
its resumed runs, its local workers and every search method share them. The
weights of a tree trained in this process are kept for ``inherit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mtnas.core import MtnasError, write_checked
from mtnas.data import DatasetBundle
from mtnas.model import load_weights, save_weights, tree_cost
from mtnas.space import SearchSpace
from mtnas.train import (
    Baselines,
    TreeResult,
    cache_dir,
    compute_baselines,
    per_task_delta,
    proxy_space,
    read_result,
    read_task_deltas,
    subset_space,
    train_subset_networks,
    train_tree_model,
    train_trees,
    write_result,
)
from mtnas.tree import BranchingTree

__all__ = ["Evaluated", "Evidence", "cached_result", "remember_result"]


@dataclass(frozen=True)
class Evaluated:
    """One trained tree: its result, validation delta-m (%) and cost relative to all-shared."""

    tree: BranchingTree
    result: TreeResult
    delta_m: float
    cost: float

    def score(self, gain_per_cost: float) -> float:
        """Delta-m less ``gain_per_cost`` points per all-shared network's worth of extra cost."""
        return self.delta_m - gain_per_cost * (self.cost - 1.0)


def _cache_path(proxy: SearchSpace, seed: int, key: str) -> Path:
    return cache_dir() / "trees" / f"{proxy.training_hash}-seed{seed}" / f"{key}.json"


def cached_result(tree: BranchingTree, proxy: SearchSpace, seed: int) -> TreeResult | None:
    """``tree``'s result on the proxy space ``proxy`` with ``seed`` when a search or trial trained it
    before (None: not in the cache, or damaged: trained again)."""
    cached = read_result(_cache_path(proxy, seed, tree.key), proxy)
    return cached if cached is not None and cached.tree == tree else None


def remember_result(result: TreeResult, proxy: SearchSpace, seed: int) -> None:
    """Keep a tree's result on ``proxy`` with ``seed`` in the cache (``cached_result``)."""
    write_result(_cache_path(proxy, seed, result.tree.key), result)


class Evidence:
    """Trained trees of one space at its proxy budget, with their delta-m and relative cost.

    Args:
        space: a resolved search space; its ``proxy_epochs`` is the budget and
            ``search.cost_metric`` the cost counted.
        bundle: its dataset (trees train on ``train``, delta-m is read on ``val``).
        seed: the seed of every training, the baselines' included.
        baselines: the proxy baselines when the caller has them (a study); else computed (cached).
    """

    def __init__(self, space: SearchSpace, bundle: DatasetBundle, *, seed: int, device: torch.device | str = "cpu",
                 baselines: Baselines | None = None, use_cache: bool = True, progress: bool = False) -> None:
        self.space, self.bundle, self.seed = space, bundle, seed
        self.device = torch.device(device)
        self.proxy = proxy_space(space)
        self.use_cache, self.progress = use_cache, progress
        self.baselines = baselines or compute_baselines(self.proxy, bundle, device=self.device, seed=seed,
                                                        use_cache=use_cache, progress=progress)
        self._shared_cost = self._cost_of(BranchingTree.all_shared(space.task_names, space.num_layers))
        self._known: dict[str, Evaluated] = {}
        self._weights: dict[str, dict[str, torch.Tensor]] = {}
        self.trained = 0  # trees trained by this object (not read from a cache)

    def _cost_of(self, tree: BranchingTree) -> float:
        return float(getattr(tree_cost(tree, self.space), self.space.search.cost_metric))

    def relative_cost(self, tree: BranchingTree) -> float:
        """The tree's cost over the all-shared tree's (1.0 = all-shared)."""
        return self._cost_of(tree) / self._shared_cost

    def known(self, tree: BranchingTree) -> bool:
        """Whether ``tree`` is already trained (here or in the cache)."""
        return tree.key in self._known or (self.use_cache and cached_result(tree, self.proxy, self.seed) is not None)

    def evaluate(self, tree: BranchingTree) -> Evaluated:
        """``tree`` trained at the proxy budget (or its remembered result)."""
        return self.evaluate_all([tree])[0]

    def evaluate_all(self, trees: Sequence[BranchingTree]) -> list[Evaluated]:
        """Every tree trained at the proxy budget (or remembered); the missing ones train together,
        stacked where they share a wiring (``mtnas.train.train_trees``)."""
        missing: dict[str, BranchingTree] = {}
        for tree in trees:
            if tree.key in self._known or tree.key in missing:
                continue
            cached = cached_result(tree, self.proxy, self.seed) if self.use_cache else None
            if cached is not None:
                self._remember(tree, cached)
            else:
                missing[tree.key] = tree
        if missing:
            for tree, (result, weights) in zip(missing.values(), train_trees(
                    self.proxy, self.bundle, list(missing.values()), device=self.device, seed=self.seed,
                    progress=self.progress)):
                self.trained += 1
                self._weights[tree.key] = weights
                if self.use_cache:
                    remember_result(result, self.proxy, self.seed)
                self._remember(tree, result)
        return [self._known[t.key] for t in trees]

    def _remember(self, tree: BranchingTree, result: TreeResult) -> None:
        self._known[tree.key] = Evaluated(tree, result, self.baselines.delta_m(result, self.proxy, "val"),
                                          self.relative_cost(tree))

    def evaluated(self) -> list[Evaluated]:
        """Every tree evaluated through this object, in order."""
        return list(self._known.values())

    def weights(self, tree: BranchingTree) -> dict[str, torch.Tensor]:
        """The trained weights of ``tree`` (a ``BranchedNet`` state dict): from this process's
        training, else from the cache, else trained again (the same seed gives the same network).
        Kept in the cache beside the tree's result, so the next trial whose search chooses the same
        tree reads them instead of training it once more."""
        path = _cache_path(self.proxy, self.seed, tree.key).with_suffix(".safetensors")
        state, stored = self._weights.get(tree.key), False
        if state is None and self.use_cache and path.is_file():
            try:
                state, stored = load_weights(path, tree_key=tree.key), True
            except MtnasError:
                state = None  # damaged: trained again, and written anew
        if state is None:
            _, model = train_tree_model(tree, self.proxy, self.bundle, device=self.device, seed=self.seed)
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if self.use_cache and not stored and (tree.key not in self._weights or not path.is_file()):
            save_weights(path, state, tree_key=tree.key)
        self._weights[tree.key] = state
        return state

    def subset_deltas(self, members: Sequence[Sequence[str]]) -> list[dict[str, float]]:
        """Each task's delta-m (%) in an all-shared network of each task subset (e.g. every pair),
        trained at the proxy budget: what sharing with those partners does to it (Standley et al. 2020).
        Stacked under ``torch.vmap`` where the space allows; cached like the trees."""
        path = cache_dir() / "subsets" / f"{self.proxy.training_hash}-seed{self.seed}.json"
        stored = (read_task_deltas(path, self.proxy) if self.use_cache else None) or {}
        key = [",".join(m) for m in members]
        missing = [m for m, k in zip(members, key) if k not in stored]
        if missing:
            solo = self.baselines.metrics("val")
            for m, result in zip(missing, train_subset_networks(self.proxy, self.bundle, missing, device=self.device,
                                                                seed=self.seed)):
                sub = {t: solo[t] for t in m}
                stored[",".join(m)] = per_task_delta(result.val, sub, subset_space(self.proxy, m))
            self.trained += len(missing)
            if self.use_cache:
                write_checked(path, stored)
        return [stored[k] for k in key]

