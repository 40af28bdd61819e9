"""Lookahead losses on the supernet's shared path: how one task's step moves every task's loss.

Both the ``affinity`` method and TAG (Fifty et al. 2021) measure inter-task affinity from these:
for each task i, one SGD step of ``lr`` on task i's loss alone, then every task's loss again.
"""

from __future__ import annotations

import torch

from mtnas.data import TaskData
from mtnas.space import SearchSpace
from mtnas.train import task_losses

__all__ = ["lookahead_losses"]


def lookahead_losses(net: torch.nn.Module, batch: TaskData, space: SearchSpace, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, S)`` on the shared path (node 0 of every layer): ``L[j]`` the losses now (T,, with
    autograd), ``S[i, j]`` task j's loss after a step on task i's loss (T, T, detached).

    Batch statistics as in training; running statistics are left alone (copies absorb updates).
    A task unlabelled in the batch has loss 0.
    """
    path = [blocks[0] for blocks in net.layers]
    params = [{n: p for n, p in block.named_parameters()} for block in path]
    buffers = [{n: b.clone() for n, b in block.named_buffers()} for block in path]

    def losses_with(weights: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        h = batch.inputs
        for block, w, buf in zip(path, weights, buffers):
            h = torch.func.functional_call(block, {**w, **buf}, (h,))
        out = {task: head(h) for task, head in net.heads.items()}
        losses = task_losses(out, batch.targets, space, batch.masks)
        return torch.stack([losses[t] for t in space.task_names])

    base = losses_with(params)
    flat = [p for w in params for p in w.values()]
    rows = []
    for i in range(len(space.tasks)):
        grads = iter(torch.autograd.grad(base[i], flat, retain_graph=True, allow_unused=True))
        with torch.no_grad():
            stepped = [{n: p - lr * (g if (g := next(grads)) is not None else 0) for n, p in w.items()} for w in params]
            rows.append(losses_with(stepped))
    return base, torch.stack(rows)
