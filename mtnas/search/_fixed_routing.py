"""Routing methods that choose their tree once instead of training the routing logits.

A method of this kind (``rsa``, ``tag``) fits the ``RoutingMethod`` protocol of the search loop
like this: warm-up trains the shared path (node 0 of every layer, the all-shared tree), as
``affinity`` does; at the end of warm-up (``after_epoch``) the method measures what it needs,
picks a tree with ``choose_tree``, loads every copy of a layer with the warmed-up shared block and
writes the tree into the routing logits (``encode_tree``: +-20 on the chosen parent and head
entries, so ``derive()`` and every argmax sample give that tree). The routing phase then trains
the weights of that one tree (argmax samples) and its routing loss is a zero that touches the
logits (Adam takes no step), so the search loop, its history, ``stable_epochs`` and the inherited
weights all work unchanged. This was preferred to standalone functions because the suite, the
CLI and the study then run these baselines exactly as they run the routing methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtnas.search._partitions import agglomerative, groups_of
from mtnas.search._routing import Routing, RoutingSample
from mtnas.tree import BranchingTree

__all__ = ["FixedTreeMethod", "encode_tree", "tree_fits"]

_BIG = 20.0


def encode_tree(routing: Routing, tree: BranchingTree) -> None:
    """Set the routing logits so that the argmax routes give ``tree``; ValueError if it cannot."""
    parts = tree.partitions
    if len(parts) != routing.num_layers or tuple(tree.tasks) != tuple(routing.tasks):
        raise ValueError("tree does not match the routing's tasks and layers")
    index = []
    for layer, part in enumerate(parts):
        if len(part) > routing.branches[layer]:
            raise ValueError(f"layer {layer}: {len(part)} groups, {routing.branches[layer]} nodes")
        index.append({g: k for k, g in enumerate(part)})
    with torch.no_grad():
        for layer in range(1, routing.num_layers):
            logits = routing.layer_logits(layer)
            if logits is None:
                if parts[layer] != parts[layer - 1]:
                    raise ValueError(f"layer {layer} cannot branch")
                continue
            logits.fill_(-_BIG)
            logits[:, 0] = 0.0  # unused nodes: any parent
            for g, k in index[layer].items():
                logits[k].fill_(-_BIG)
                logits[k, index[layer - 1][tree.parent(layer, g)]] = _BIG
        heads = routing.head_logits
        heads.fill_(-_BIG)
        for t, task in enumerate(routing.tasks):
            heads[t, index[-1][tree.group_of(task, routing.num_layers - 1)]] = _BIG
    if routing.derive().tree != tree:
        raise ValueError("the encoded routes do not give the tree")


def tree_fits(routing: Routing, tree: BranchingTree) -> bool:
    """Whether ``tree`` can be encoded in ``routing`` (node counts, fixed layers); leaves logits as they were."""
    saved = [p.detach().clone() for p in routing.parameters()]
    try:
        encode_tree(routing, tree)
        return True
    except ValueError:
        return False
    finally:
        with torch.no_grad():
            for p, s in zip(routing.parameters(), saved):
                p.copy_(s)


@dataclass
class FixedTreeState:
    tree: BranchingTree | None = None
    info: dict[str, Any] = field(default_factory=dict)


class FixedTreeMethod:
    """Base of the methods that choose one tree at the end of warm-up (see the module docstring)."""

    def init(self, ctx: Any) -> FixedTreeState:
        return FixedTreeState()

    def choose_tree(self, ctx: Any, state: FixedTreeState) -> BranchingTree:
        raise NotImplementedError

    def weight_sample(self, ctx: Any, state: FixedTreeState, tau: float, warm: bool) -> RoutingSample:
        if warm or state.tree is None:
            return ctx.net.routing.shared_path()
        return ctx.net.routing.sample(argmax=True)

    def after_weight_step(self, ctx: Any, state: FixedTreeState, batch: Any, warm: bool) -> None:
        return None

    def routing_loss(self, ctx: Any, state: FixedTreeState, batch: Any, tau: float) -> torch.Tensor:
        return ctx.net.routing.head_logits.sum() * 0.0  # the tree is chosen: nothing to learn

    def after_epoch(self, ctx: Any, state: FixedTreeState, epoch: int, warm: bool) -> None:
        if epoch != max(ctx.cfg.warmup_epochs - 1, 0) or state.tree is not None:
            return
        for blocks in ctx.net.layers:
            for block in blocks[1:]:
                block.load_state_dict(blocks[0].state_dict())
        state.tree = self.choose_tree(ctx, state)
        encode_tree(ctx.net.routing, state.tree)

    def candidates(self, ctx: Any, dist_from: Callable[[int], np.ndarray]) -> list[BranchingTree]:
        """All-shared plus, for each layer s and k = 2..K_s groups, the tree that splits once at s into
        the ``k`` clusters of ``dist_from(s)``; only trees the routing can encode."""
        tasks, n = ctx.space.task_names, ctx.space.num_layers
        out = [BranchingTree.all_shared(tasks, n)]
        for s in range(n):
            dist = dist_from(s)
            for k in range(2, min(ctx.net.routing.branches[s], len(tasks)) + 1):
                tree = BranchingTree.from_split_points(tasks, n, {s: groups_of(tasks, agglomerative(dist, k))})
                if tree not in out and tree_fits(ctx.net.routing, tree):
                    out.append(tree)
        return out
