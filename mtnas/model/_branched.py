"""BranchedNet: the plain ``nn.Module`` of one branching tree.

One block per tree node (layer, task group), each computed once per forward; every task's head
reads the last-layer node of its group. Blocks come from the same ``BlockPlan`` builders the
supernet uses, so a derived tree is rebuilt faithfully. Parameters are named
``layers.{layer}.{group index}.*`` (group index in the tree's canonical order) and ``heads.{task}.*``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mtnas.model._pretrained import load_pretrained
from mtnas.nn import DENSE_KINDS, BlockPlan, build_head
from mtnas.space import SearchSpace
from mtnas.tree import BranchingTree

__all__ = ["BranchedNet", "build_heads"]


def build_heads(space: SearchSpace, last_shape: tuple[int, ...]) -> nn.ModuleDict:
    """One fresh head per task of a resolved space, reading features of ``last_shape``."""
    if not space.is_resolved:
        raise ValueError("build_heads needs a resolved space (SearchSpace.resolve)")
    out_size = tuple(space.input_shape[-2:]) if len(space.input_shape) == 3 else None
    return nn.ModuleDict(
        {
            t.name: build_head(t.head, t.kind, last_shape, t.num_outputs, out_size if t.kind in DENSE_KINDS else None)
            for t in space.tasks
        }
    )


class BranchedNet(nn.Module):
    """A multi-task network shaped by ``tree``.

    Args:
        tree: which tasks share each layer.
        plans: one block plan per backbone layer.
        heads: one head per task of the tree.
    """

    def __init__(self, *, tree: BranchingTree, plans: list[BlockPlan], heads: nn.ModuleDict) -> None:
        super().__init__()
        if len(plans) != tree.num_layers:
            raise ValueError(f"tree has {tree.num_layers} layers, backbone has {len(plans)}")
        self.tree = tree
        self.layers = nn.ModuleList(
            nn.ModuleList(plan.make() for _ in tree.groups_at(layer)) for layer, plan in enumerate(plans)
        )
        self.heads = heads
        # parents[l][j]: index of the group at layer l-1 that feeds group j of layer l.
        self._parents: list[list[int]] = [[0] * len(tree.groups_at(0))]
        for layer in range(1, tree.num_layers):
            prev = tree.groups_at(layer - 1)
            self._parents.append(
                [next(i for i, p in enumerate(prev) if g[0] in p) for g in tree.groups_at(layer)]
            )
        last = tree.groups_at(tree.num_layers - 1)
        self._head_node = {t: next(j for j, g in enumerate(last) if t in g) for t in tree.tasks}

    @classmethod
    def from_space(cls, tree: BranchingTree, space: SearchSpace, *, pretrained: bool = True) -> BranchedNet:
        """The network of ``tree`` in a resolved ``space``: fresh weights, except that with
        ``backbone.weights`` set (and ``pretrained``) every group's block starts from the file's
        block of its layer; heads stay fresh. See ``mtnas.pretrained``."""
        tree.check_against(space.task_names, space.num_layers)
        plans = space.backbone.plan(space.input_shape, pretrained=pretrained)
        net = cls(tree=tree, plans=plans, heads=build_heads(space, plans[-1].out_shape))
        if pretrained and space.backbone.weights is not None:
            load_pretrained(net.layers, space.backbone)
        return net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = [x]  # outputs of the previous layer's nodes; the input is the root
        for layer, blocks in enumerate(self.layers):
            parents = self._parents[layer] if layer else [0] * len(blocks)
            feats = [block(feats[p]) for block, p in zip(blocks, parents)]
        return {task: head(feats[self._head_node[task]]) for task, head in self.heads.items()}

    def node_modules(self) -> Mapping[tuple[int, tuple[str, ...]], nn.Module]:
        """The block of each tree node, keyed by (layer, group)."""
        return {
            (layer, group): self.layers[layer][j]
            for layer in range(self.tree.num_layers)
            for j, group in enumerate(self.tree.groups_at(layer))
        }
