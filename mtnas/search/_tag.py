"""``tag``: task groupings from lookahead inter-task affinity, one network per group (no routing training)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mtnas.search._fixed_routing import (
    FixedTreeMethod,
    FixedTreeState,
    agglomerative,
    best_partition,
    groups_of,
    relative_cost,
    tree_fits,
)
from mtnas.search._lookahead import lookahead_losses
from mtnas.tree import BranchingTree

__all__ = ["TaskAffinityGrouping", "tag_affinity"]


def tag_affinity(net: Any, batch: Any, space: Any, lr: float) -> torch.Tensor:
    """(T, T) TAG's lookahead affinity on the shared path: ``Z[i, j] = 1 - L_j(w - lr g_i) / L_j(w)``."""
    base, stepped = lookahead_losses(net, batch, space, lr)
    with torch.no_grad():
        return (1 - stepped / base.clamp_min(1e-12)).detach().cpu()


class TaskAffinityGrouping(FixedTreeMethod):
    """Fifty et al., "Efficiently Identifying Task Groupings for Multi-Task Learning", NeurIPS 2021.

    1. The search's warm-up trains one network shared by all tasks (the shared path); on every
       ``every``-th weight step (less often with many tasks, as ``affinity``) TAG's lookahead
       inter-task affinity ``Z[i, j] = 1 - L_j(w - lr g_i) / L_j(w)`` is measured on a fresh
       batch and averaged over the whole warm-up, as TAG averages over training.
    2. For k = 1..K groups (K: the nodes of the first layer that can branch), the grouping that
       maximises TAG's total affinity ``sum_i mean_{j in group(i), j != i} Z[j, i]`` (0 for a task
       alone) is searched: exactly over every partition where there are at most 20,000 (9 tasks
       into 3 groups: 3,025), as TAG's branch-and-bound is exact, else by single-task moves from
       an average-linkage start (40 tasks), with ``Z`` scaled so its strongest off-diagonal entry
       is +-1. TAG's network budget becomes a Lagrangian term: the k maximising
       ``total / T - cost_weight * (relative cost - 1)`` is chosen.
    3. As in TAG, each group is its own network: the tree splits at the input (the first layer that
       can branch) and never shares again. TAG's overlapping groups are not used.
    """

    every = 2
    tasks_per_step = 3
    batch = 256
    lookahead_lr = 0.05

    def init(self, ctx: Any) -> FixedTreeState:
        t = len(ctx.space.tasks)
        state = FixedTreeState()
        state.info.update(sum=torch.zeros(t, t), count=0, steps=0,
                          generator=torch.Generator().manual_seed(int(torch.randint(2**31, ()))))
        return state

    def after_weight_step(self, ctx: Any, state: FixedTreeState, batch: Any, warm: bool) -> None:
        info = state.info
        info["steps"] += 1
        every = max(self.every, math.ceil(len(ctx.space.tasks) / self.tasks_per_step))
        if not warm or info["steps"] % every:
            return
        rows = torch.randint(len(ctx.train), (self.batch,), generator=info["generator"]).to(ctx.train.inputs.device)
        z = tag_affinity(ctx.net, ctx.train.select(rows), ctx.space, self.lookahead_lr)
        if torch.isfinite(z).all():
            info["sum"] += z
            info["count"] += 1

    def choose_tree(self, ctx: Any, state: FixedTreeState) -> BranchingTree:
        tasks, n = ctx.space.task_names, ctx.space.num_layers
        t = len(tasks)
        z = (state.info["sum"] / max(state.info["count"], 1)).numpy().astype(float)
        np.fill_diagonal(z, 0.0)
        z = z / max(np.abs(z).max(), 1e-12)
        state.info["affinity"] = z
        onto = z.T  # onto[i, j] = Z[j, i]: what j's step does for i

        def total(labels: np.ndarray) -> float:
            s = 0.0
            for i in range(t):
                mates = [j for j in range(t) if labels[j] == labels[i] and j != i]
                if mates:
                    s += float(onto[i, mates].mean())
            return s

        layer = next((s for s in range(n) if ctx.net.routing.branches[s] > 1), None)
        best, best_score = BranchingTree.all_shared(tasks, n), total(np.zeros(t, dtype=int)) / t
        scores = {1: best_score}
        if layer is not None:
            sym = (z + z.T) / 2
            for k in range(2, min(ctx.net.routing.branches[layer], t) + 1):
                labels = best_partition(total, agglomerative(sym.max() - sym, k), k)
                tree = BranchingTree.from_split_points(tasks, n, {layer: groups_of(tasks, labels)})
                if not tree_fits(ctx.net.routing, tree):
                    continue
                score = total(labels) / t - ctx.cfg.cost_weight * (relative_cost(tree, ctx.block_costs, ctx.head_cost) - 1)
                scores[k] = score
                if score > best_score:
                    best, best_score = tree, score
        state.info["scores"] = scores
        return best
