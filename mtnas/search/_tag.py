"""``tag``: Task Affinity Grouping as published (Fifty et al., "Efficiently Identifying Task
Groupings for Multi-Task Learning", NeurIPS 2021).

1. One network shared by all tasks is trained for the whole budget (``SearchSpace.proxy_epochs``).
   Every ``EVERY`` steps, on the step's batch and before its update, TAG's lookahead inter-task
   affinity is measured: for each task i, one SGD step of the current learning rate on task i's
   loss alone over the shared weights, then ``Z[i, j] = 1 - L_j(w - lr g_i) / L_j(w)`` for every
   task j. The affinities are averaged over the whole training.
2. For k = 1..K groups (K: the branches of the first layer that may branch), the partition that
   maximises TAG's total affinity ``sum_i mean_{j in group(i), j != i} Z[j, i]`` (0 for a task
   alone): exactly over every partition where there are at most 20,000 (TAG's branch and bound
   is exact), else by single-task moves from an average-linkage start
   (``mtnas.search._partitions.best_partition``). TAG's network budget becomes a trade-off: the k
   maximising ``total - cost_weight * (relative cost - 1)`` (``mtnas.space.trade_off_score``).
3. Each group is its own network: the tree splits at the first layer that may branch. TAG's
   overlapping groups are not used. The tree's weights are inherited from the shared network.

Its rank correlation with the exhaustive trained ranking is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from mtnas.data import DatasetBundle, TaskData
from mtnas.model import BranchedNet, inherit_state, relative_cost
from mtnas.search._gradients import SAMPLES
from mtnas.search._lookahead import lookahead_losses
from mtnas.search._partitions import best_partition, groups_of
from mtnas.search._result import SearchResult
from mtnas.search._routing import space_branches
from mtnas.space import SearchConfig, SearchSpace, trade_off_score
from mtnas.train import proxy_space, train_model
from mtnas.tree import BranchingTree

__all__ = ["EVERY", "TaskAffinityGrouping", "mean_tag_affinity", "tag_affinity", "tag_total", "train_with_affinity"]

#: Steps between two affinity measurements, as in TAG.
EVERY = 10


def tag_affinity(net: torch.nn.Module, batch: TaskData, space: SearchSpace, lr: float) -> torch.Tensor:
    """(T, T) TAG's lookahead affinity on the shared path: ``Z[i, j] = 1 - L_j(w - lr g_i) / L_j(w)``."""
    base, stepped = lookahead_losses(net, batch, space, lr)
    with torch.no_grad():
        return (1 - stepped / base.clamp_min(1e-12)).detach().cpu()


def mean_tag_affinity(net: BranchedNet, data: TaskData, space: SearchSpace, *, samples: int = SAMPLES,
                       batch_size: int = 256) -> np.ndarray:
    """(T, T) TAG's lookahead affinity of a trained all-shared ``net``, averaged over the batches of
    the first ``samples`` training samples at the space's learning rate: what the budgeted search's
    ``tag`` proposer reads after the first rung, instead of over a training of its own."""
    total, count = torch.zeros(len(space.tasks), len(space.tasks)), 0
    device = next(net.parameters()).device
    for batch in data.select(slice(0, samples)).batches(batch_size):
        z = tag_affinity(net, batch.to(device), space, space.training.lr)
        if torch.isfinite(z).all():
            total, count = total + z, count + 1
    return (total / max(count, 1)).numpy().astype(float)


def train_with_affinity(space: SearchSpace, bundle: DatasetBundle, *, seed: int, device: torch.device | str = "cpu",
                        epochs: int | None = None, every: int = EVERY, progress: bool = False
                        ) -> tuple[BranchedNet, np.ndarray, int]:
    """Train the all-shared network, measuring TAG's affinity every ``every`` steps; returns the
    trained network, the mean affinity (T, T) and the number of measurements."""
    tree = BranchingTree.all_shared(space.task_names, space.num_layers)
    torch.manual_seed(seed)
    net = BranchedNet.from_space(tree, space)
    total, count = torch.zeros(len(space.tasks), len(space.tasks)), 0

    def measure(step: int, lr: float, batch: TaskData) -> None:
        nonlocal total, count
        if step % every:
            return
        z = tag_affinity(net, batch, space, lr)
        if torch.isfinite(z).all():
            total, count = total + z, count + 1

    train_model(net, space, bundle, device=torch.device(device), seed=seed, epochs=epochs, progress=progress,
                desc="tag: all-shared", before_step=measure)
    return net, (total / max(count, 1)).numpy().astype(float), count


def tag_total(z: np.ndarray, labels: np.ndarray) -> float:
    """TAG's total affinity of a grouping, per task: ``mean_i mean_{j in group(i), j != i} Z[j, i]``."""
    t = len(labels)
    total = 0.0
    for i in range(t):
        mates = [j for j in range(t) if labels[j] == labels[i] and j != i]
        if mates:
            total += float(np.mean(z[mates, i]))
    return total / t


class TaskAffinityGrouping:
    """TAG (module docstring): one all-shared training with lookahead affinity, then the grouping."""

    kind = "trained"
    uses = ("cost_weight",)

    def search(self, space: SearchSpace, bundle: DatasetBundle, *, seed: int, hparams: SearchConfig,
               device: torch.device, branches: int | Sequence[int] | None = None, progress: bool = False,
               eval_seed: int | None = None, store: object = None) -> SearchResult:
        start = time.perf_counter()
        space = replace(space, search=hparams)
        net, z, _ = train_with_affinity(proxy_space(space), bundle, seed=seed, device=device, progress=progress)
        tasks, layers = space.task_names, space.num_layers
        shared = BranchingTree.all_shared(tasks, layers)
        limit = space_branches(space, branches)
        layer = next((s for s in range(layers) if space.can_branch[s] and limit[s] > 1), None)

        options = [(tag_total(z, np.zeros(len(tasks), dtype=int)), shared)]
        if layer is not None:
            sym = (z + z.T) / 2
            np.fill_diagonal(sym, 0.0)
            for k in range(2, min(limit[layer], len(tasks)) + 1):
                labels = best_partition(lambda lab: tag_total(z, lab), k, sym.max() - sym)
                tree = BranchingTree.from_split_points(tasks, layers, {layer: groups_of(tasks, labels)})
                options.append((tag_total(z, labels), tree))
        values = [trade_off_score(total, relative_cost(tree, space, hparams.cost_metric), hparams.cost_weight)
                  for total, tree in options]
        tree = options[int(np.argmax(values))][1]
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        return SearchResult(tree=tree, derived=None, routing={}, weights=inherit_state(shared, state, tree),
                            seconds=time.perf_counter() - start, hparams=hparams)
