"""Cost of a tree in a space: parameters and FLOPs per sample, and relative to the all-shared tree."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mtnas.model._branched import BranchedNet
from mtnas.space import SearchSpace
from mtnas.tree import BranchingTree

__all__ = ["Cost", "count_flops", "count_params", "relative_cost", "tree_cost"]


@dataclass(frozen=True)
class Cost:
    """Parameters, and forward FLOPs for one sample."""

    params: int
    flops: int

    def to_dict(self) -> dict[str, int]:
        return {"params": self.params, "flops": self.flops}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of ``model`` for one input of ``input_shape`` (counted by PyTorch)."""
    param = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def tree_cost(tree: BranchingTree, space: SearchSpace) -> Cost:
    """Params and FLOPs of ``tree`` built in the resolved ``space`` (cached per tree and space)."""
    key = (tree, space.content_hash)
    if key not in _COSTS:
        model = BranchedNet.from_space(tree, space, pretrained=False)  # only counted
        _COSTS[key] = Cost(count_params(model), count_flops(model, space.input_shape))
    return _COSTS[key]


_COSTS: dict[tuple[BranchingTree, str], Cost] = {}


def relative_cost(tree: BranchingTree, space: SearchSpace, metric: Literal["flops", "params"] = "flops") -> float:
    """``tree``'s cost (``metric``) over the all-shared tree's over every task of ``space``: 1 for
    the all-shared tree, about the number of networks for trees that share nothing. A tree over
    some of the space's tasks (a pair's network, a task alone) is built with those tasks' heads
    only, so it costs a little less than the all-shared tree of all of them.

    The one rule every search, study and benchmark compares trees' costs by (a store that answers
    units from published trainings has its own: ``mtnas.train.AnsweringStore.relative_cost``).
    """
    own = space if set(tree.tasks) == set(space.task_names) else replace(
        space, tasks=tuple(space.task(t) for t in tree.tasks))
    shared = BranchingTree.all_shared(space.task_names, space.num_layers)
    return float(getattr(tree_cost(tree, own), metric)) / float(getattr(tree_cost(shared, space), metric))
