"""Cost of a tree in a space: parameters and FLOPs per sample."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mtnas.model._branched import BranchedNet
from mtnas.space import SearchSpace
from mtnas.tree import BranchingTree

__all__ = ["Cost", "count_flops", "count_params", "tree_cost"]


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
