"""Task losses of one batch and task metrics of one split, as the space defines them."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mtnas.data import TaskData
from mtnas.nn import get_loss, get_metric
from mtnas.space import SearchSpace

__all__ = ["TaskMetrics", "evaluate", "task_losses"]

#: metrics[task][metric] = value
TaskMetrics = dict[str, dict[str, float]]


def task_losses(
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    space: SearchSpace,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Each task's weighted loss for one batch, over the samples labelled for it (``masks``).

    A task with no labelled sample in the batch gets a zero loss that still reaches its head
    (a zero gradient), so every parameter takes part in every step, as DDP requires.
    """
    losses = {}
    for t in space.tasks:
        if t.name not in outputs:
            continue
        pred, target = outputs[t.name].float(), targets[t.name]
        mask = masks.get(t.name) if masks else None
        if mask is not None:
            if not bool(mask.any()):
                losses[t.name] = pred.sum() * 0.0
                continue
            pred, target = pred[mask], target[mask]
        losses[t.name] = t.weight * get_loss(t.loss, t.kind)(pred, target)
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, split: TaskData, space: SearchSpace, *, batch_size: int = 512) -> TaskMetrics:
    """Every task's metrics on ``split`` (on the model's device, or moved there batch by batch)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[tuple[str, str], torch.Tensor] = {}
    for batch in split.batches(batch_size):
        if batch.inputs.device != device:
            batch = batch.to(device, non_blocking=True)
        outputs = model(batch.inputs)
        for t in space.tasks:
            if t.name not in outputs:
                continue
            pred, target, mask = outputs[t.name].float(), batch.targets[t.name], batch.labelled(t.name)
            if mask is not None:  # partial labels: only the samples labelled for this task count (none: zero sums,
                pred, target = pred[mask], target[mask]  # so a split without its labels reads 0, as with -100 targets)
            for m in t.metrics:
                stats = get_metric(m, t.kind).stats(pred, target).cpu()
                sums[t.name, m] = sums[t.name, m] + stats if (t.name, m) in sums else stats
    model.train(was_training)
    result: TaskMetrics = {}
    for (task, m), stats in sums.items():
        result.setdefault(task, {})[m] = get_metric(m, space.task(task).kind).finish(stats)
    return result
