"""Single-task baselines (and the all-shared tree), cached on disk.

Delta-m compares every multi-task tree against one network per task trained with the same
backbone and budget. Those runs depend only on the space's content, the seed and the budget, so
their results are cached under ``$MTNAS_CACHE_DIR`` (default ``~/.cache/mtnas``) and reused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mtnas.core import atomic_write_text
from mtnas.data import DatasetBundle
from mtnas.space import SearchSpace
from mtnas.train._delta_m import delta_m
from mtnas.train._engine import TaskMetrics
from mtnas.train._fixed_tree import TreeResult, train_tree
from mtnas.tree import BranchingTree

__all__ = ["Baselines", "cache_dir", "compute_baselines"]

FORMAT_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("MTNAS_CACHE_DIR", Path.home() / ".cache" / "mtnas"))


@dataclass(frozen=True)
class Baselines:
    """One single-task result per task, plus the all-shared tree's."""

    single_task: Mapping[str, TreeResult]
    all_shared: TreeResult
    seed: int
    space_hash: str

    def metrics(self, split: str = "test") -> TaskMetrics:
        """The single-task metrics on ``split``: the reference of delta-m."""
        return {t: getattr(r, split)[t] for t, r in self.single_task.items()}

    def delta_m(self, result: TreeResult, space: SearchSpace, split: str = "test") -> float:
        return delta_m(getattr(result, split), self.metrics(split), space)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "seed": self.seed,
            "space_hash": self.space_hash,
            "single_task": {t: r.to_dict() for t, r in self.single_task.items()},
            "all_shared": self.all_shared.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baselines:
        return cls(
            single_task={t: TreeResult.from_dict(r) for t, r in data["single_task"].items()},
            all_shared=TreeResult.from_dict(data["all_shared"]),
            seed=int(data["seed"]),
            space_hash=str(data["space_hash"]),
        )


def compute_baselines(
    space: SearchSpace,
    bundle: DatasetBundle,
    *,
    device: torch.device,
    seed: int,
    use_cache: bool = True,
    progress: bool = False,
) -> Baselines:
    """Train (or load from the cache) one network per task and the all-shared tree."""
    path = cache_dir() / "baselines" / f"{space.content_hash}-seed{seed}.json"
    if use_cache and path.is_file():
        try:
            return Baselines.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            pass  # a stale or damaged cache entry is recomputed
    single = {}
    # a single task has nothing to balance: its network trains on its plain loss whatever the
    # space's training.balancing (uncertainty weighting would only rescale its learning rate)
    solo_training = replace(space.training, balancing="equal")
    for task in space.tasks:
        solo = replace(space, tasks=(task,), training=solo_training)
        tree = BranchingTree.all_shared((task.name,), space.num_layers)
        single[task.name] = train_tree(
            tree, solo, bundle, device=device, seed=seed, progress=progress, desc=f"single-task {task.name}"
        )
    shared = train_tree(
        BranchingTree.all_shared(space.task_names, space.num_layers), space, bundle,
        device=device, seed=seed, progress=progress, desc="all-shared",
    )
    baselines = Baselines(single, shared, seed, space.content_hash)
    if use_cache:
        atomic_write_text(path, json.dumps(baselines.to_dict(), indent=1))
    return baselines
