"""Single-task baselines (and the all-shared tree), cached on disk.

Delta-m compares every multi-task tree against one network per task trained with the same
backbone and budget. Those runs depend only on the space's content (but its search settings:
``SearchSpace.training_hash``), the dataset's content (``mtnas.data.data_digest``: a dataset
regenerated under the same name trains anew), the seed and the budget, so their results are cached under
``$MTNAS_CACHE_DIR`` (default ``~/.cache/mtnas``) and reused, as a checked entry: a damaged or
edited one (its checksum, its tasks, a number that is not finite) is trained again, with a
warning naming the file (``mtnas.train._cached``).
The T networks train as one stacked model (``mtnas.train._batched``). Together they are the
independent tree (one network per task): :meth:`Baselines.independent` gives its result, so a
study need not train that tree again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from mtnas.core import cache_dir, read_checked, short_repr, write_checked
from mtnas.data import DatasetBundle, data_digest
from mtnas.model import tree_cost
from mtnas.space import SearchSpace
from mtnas.train._batched import train_single_tasks
from mtnas.train._cached import checked_result, mapping
from mtnas.train._delta_m import delta_m
from mtnas.train._engine import TaskMetrics
from mtnas.train._fixed_tree import TreeResult, train_tree
from mtnas.tree import BranchingTree

__all__ = ["SUM_OF_SOLO_LOSSES", "Baselines", "cache_dir", "compute_baselines", "proxy_space"]

FORMAT_VERSION = 1
#: Loss balancings under which a tree of disjoint networks trains each network as alone (the
#: summed loss, and PCGrad, which never projects gradients of parameters no two tasks share):
#: under them the independent tree is the single-task networks (:meth:`Baselines.independent`).
SUM_OF_SOLO_LOSSES = ("equal", "pcgrad")


def proxy_space(space: SearchSpace) -> SearchSpace:
    """The space with the search's training budget (``SearchSpace.proxy_epochs``).

    Trial trees, the trees a search trains as evidence and the single-task baselines of delta-m
    are all trained on it, so delta-m compares like with like.
    """
    return replace(space, training=replace(space.training, epochs=space.proxy_epochs))


@dataclass(frozen=True)
class Baselines:
    """One single-task result per task, plus the all-shared tree's.

    ``data`` is the digest of the dataset they were trained on (``mtnas.data.data_digest``), None
    when unknown (an entry of an older mtnas).
    """

    single_task: Mapping[str, TreeResult]
    all_shared: TreeResult
    seed: int
    space_hash: str
    data: str | None = None

    def metrics(self, split: str = "test") -> TaskMetrics:
        """The single-task metrics on ``split``: the reference of delta-m."""
        return {t: getattr(r, split)[t] for t, r in self.single_task.items()}

    def delta_m(self, result: TreeResult, space: SearchSpace, split: str = "test") -> float:
        return delta_m(getattr(result, split), self.metrics(split), space)

    def independent(self, space: SearchSpace) -> TreeResult:
        """The independent tree's result (``BranchingTree.independent``: one network per task), read
        off the single-task networks instead of trained again.

        The independent tree is those T networks: its tasks share no parameter, so with
        ``balancing: equal`` (and ``pcgrad``, which never projects gradients of disjoint
        parameters) it trains each as alone; only the draw of the initial weights differs
        (``train_tree`` seeds once for the whole tree, each baseline network is seeded on its own).
        Its delta-m against these baselines is 0 by construction. ``seconds`` sums the networks'.
        """
        if set(space.task_names) != set(self.single_task):
            raise ValueError(f"space tasks {list(space.task_names)} are not the baselines' {list(self.single_task)}")
        tree = BranchingTree.independent(space.task_names, space.num_layers)
        return TreeResult(
            tree=tree,
            cost=tree_cost(tree, space),
            val={t: dict(self.single_task[t].val[t]) for t in space.task_names},
            test={t: dict(self.single_task[t].test[t]) for t in space.task_names},
            seconds=sum(r.seconds for r in self.single_task.values()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "seed": self.seed,
            "space_hash": self.space_hash,
            "data": self.data,
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
            data=data.get("data"),
        )

    @classmethod
    def checked(cls, data: Any, space: SearchSpace, seed: int, digest: str | None = None) -> Baselines:
        """Stored baselines (``to_dict``), checked to be those of ``space`` and ``seed`` (and, when
        ``digest`` is given, of the dataset of that ``data_digest``): one single-task result per
        task of the space, the all-shared tree, every metric finite.

        Raises:
            ValueError, KeyError, TypeError, MtnasError: with the reason, when they are not.
        """
        data = mapping(data, "the entry")
        if data.get("seed") != seed or data.get("space_hash") != space.training_hash:
            raise ValueError(f"baselines of seed {short_repr(data.get('seed'))} and space "
                             f"{short_repr(data.get('space_hash'))}, expected {seed} and {space.training_hash}")
        trained_on = data.get("data")
        if (trained_on is not None and not isinstance(trained_on, str)) or (digest is not None and trained_on != digest):
            raise ValueError(f"baselines of the dataset {short_repr(trained_on)}, expected {digest or 'a digest'}")
        single = mapping(data["single_task"], "single_task")
        if set(single) != set(space.task_names):
            raise ValueError(f"single_task holds tasks {short_repr(sorted(single))}, expected "
                             f"{short_repr(sorted(space.task_names))}")
        shared = checked_result(data["all_shared"], space)
        if shared.tree != BranchingTree.all_shared(space.task_names, space.num_layers):
            raise ValueError(f"all_shared holds the tree {shared.tree.describe()!r}, not the all-shared one")
        return cls({t: checked_result(single[t], space, tasks=(t,)) for t in space.task_names}, shared, seed,
                   space.training_hash, trained_on)


def compute_baselines(
    space: SearchSpace,
    bundle: DatasetBundle,
    *,
    device: torch.device,
    seed: int,
    use_cache: bool = True,
    batched: bool = True,
    progress: bool = False,
    all_shared: Callable[[], TreeResult] | None = None,
) -> Baselines:
    """Train (or load from the cache) one network per task and the all-shared tree.

    ``batched`` trains the T single-task networks as one stacked model (same seeds, batches and
    schedule as one at a time, same metrics up to float summation order); False trains them one
    at a time. The cache entry (per ``training_hash``, dataset digest and seed) serves both: a
    dataset whose samples changed under the same name gets baselines of its own. ``all_shared``
    gives the all-shared tree's result when they are not cached (default: trained here with the
    space's budget and ``seed``; ``mtnas.train.Evidence.baselines`` obtains it as a unit of
    evidence, so a study trains that tree once).
    """
    digest = data_digest(bundle)
    path = cache_dir() / "baselines" / f"{space.training_hash}-{digest[:16]}-seed{seed}.json"
    cached = (read_checked(path, lambda data: Baselines.checked(data, space, seed, digest), "baselines")
              if use_cache else None)
    if cached is not None:
        return cached
    single = train_single_tasks(space, bundle, device=device, seed=seed, batched=batched, progress=progress)
    shared = all_shared() if all_shared is not None else train_tree(
        BranchingTree.all_shared(space.task_names, space.num_layers), space, bundle,
        device=device, seed=seed, progress=progress, desc="all-shared",
    )
    baselines = Baselines(single, shared, seed, space.training_hash, digest)
    if use_cache:
        write_checked(path, baselines.to_dict())
    return baselines
