"""Per-sample gradient agreement of the tasks in a trained all-shared network.

For every layer l of the shared path and every task t, the gradient of t's loss with respect to the
layer's output, one row per sample: ``g_t(x)`` (D,). Two tasks whose gradients point the same way
on the same samples ask the shared features for the same change; tasks whose gradients are
orthogonal read different features. The agreement of tasks i and j is the mean over samples and
layers of ``cos(g_i(x), g_j(x))``: per sample, so no task's loss scale and no sample's weight
enters, and over many samples, so it is measured once, at the end of a training, with little noise.

What it does not see: what a task's loss scale, or a slowly learning task, does to its partners
over a whole training. So it proposes groupings, and trained trees decide (how it compares with
the exhaustive trained ranking is in ``benchmarks/README.md``).
"""

from __future__ import annotations

import numpy as np
import torch

from mtnas.data import TaskData
from mtnas.model import BranchedNet
from mtnas.space import SearchSpace
from mtnas.train import task_losses

__all__ = ["gradient_agreement"]

#: Samples the agreement is measured on (the first of the training split).
SAMPLES = 1024


def gradient_agreement(net: BranchedNet, data: TaskData, space: SearchSpace, *, samples: int = SAMPLES,
                       batch_size: int = 256) -> np.ndarray:
    """(T, T) the tasks' mean per-sample gradient cosine over the shared path's layers (1 on the
    diagonal), for an all-shared ``net`` in eval mode (running statistics, no update)."""
    tasks = space.task_names
    t = len(tasks)
    total, count = torch.zeros(t, t), 0
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    try:
        for batch in data.select(slice(0, samples)).batches(batch_size):
            batch = batch.to(device)
            for layer in range(len(net.layers)):
                grads = _layer_gradients(net, batch, space, layer)  # (T, B, D)
                unit = grads / grads.norm(dim=2, keepdim=True).clamp_min(1e-12)
                total += torch.einsum("ibd,jbd->ij", unit, unit).cpu()
                count += grads.shape[1]
    finally:
        net.train(was_training)
    out = (total / max(count, 1)).numpy()  # the mean over samples and layers
    np.fill_diagonal(out, 1.0)
    return out


def _layer_gradients(net: BranchedNet, batch: TaskData, space: SearchSpace, layer: int) -> torch.Tensor:
    """(T, B, D) each task's per-sample gradient with respect to the output of shared ``layer``."""
    with torch.no_grad():
        h = batch.inputs
        for block in (blocks[0] for blocks in net.layers[: layer + 1]):
            h = block(h)
    h = h.detach().requires_grad_(True)
    z = h
    for blocks in net.layers[layer + 1:]:
        z = blocks[0](z)
    losses = task_losses({task: head(z) for task, head in net.heads.items()}, batch.targets, space, batch.masks)
    # a mean loss over the batch: its gradient with respect to h holds each sample's own row
    rows = [torch.autograd.grad(losses[task], h, retain_graph=True, allow_unused=True)[0] for task in space.task_names]
    return torch.stack([(r if r is not None else torch.zeros_like(h)).reshape(len(h), -1) for r in rows])
