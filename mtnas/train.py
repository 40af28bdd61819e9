"""Training and evaluation of a multi-task network on resident tensors.

Small datasets live on the training device whole, so an epoch is a loop over index slices with no
DataLoader. The optimizer and learning-rate schedule come from the space's ``training`` section.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from mtnas.balancing import make_balancer, optimizer_params, shared_parameters
from mtnas.data import DatasetBundle, TaskData
from mtnas.errors import MtnasError
from mtnas.losses import get_loss
from mtnas.metrics import get_metric
from mtnas.registry import Registry
from mtnas.space import SearchSpace, TrainingConfig

__all__ = [
    "OPTIMIZERS",
    "NonFiniteLossError",
    "TaskMetrics",
    "TrainResult",
    "evaluate",
    "make_optimizer",
    "select_device",
    "task_losses",
    "train_model",
]

#: metrics[task][metric] = value
TaskMetrics = dict[str, dict[str, float]]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names the task and the step."""


OPTIMIZERS: Registry[Callable[[list[nn.Parameter], TrainingConfig], torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.add("adam", lambda ps, c: torch.optim.Adam(ps, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.add("adamw", lambda ps, c: torch.optim.AdamW(ps, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.add("sgd", lambda ps, c: torch.optim.SGD(ps, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay))


def make_optimizer(params: list[nn.Parameter], cfg: TrainingConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.optimizer)(params, cfg)


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cpu": True,
    }
    if requested == "auto":
        return torch.device(next(name for name, ok in available.items() if ok))
    kind = requested.split(":")[0]
    if kind not in available:
        raise MtnasError(f"unknown device {requested!r}; valid: auto, cuda, mps, cpu")
    if not available[kind]:
        raise MtnasError(f"device {requested!r} is not available on this machine; use --device auto or cpu")
    return torch.device(requested)


@dataclass(frozen=True)
class TrainResult:
    """Per-task metrics on val and test after training, and the per-epoch history."""

    val: TaskMetrics
    test: TaskMetrics
    epochs: int
    seconds: float
    history: tuple[dict[str, float], ...]


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


def check_finite(losses: Mapping[str, torch.Tensor], where: str) -> None:
    for name, value in losses.items():
        if not torch.isfinite(value):
            raise NonFiniteLossError(f"loss of task {name!r} is {float(value)} at {where}")


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
            if mask is not None:  # partial labels: only the samples labelled for this task count
                if not bool(mask.any()):
                    continue
                pred, target = pred[mask], target[mask]
            for m in t.metrics:
                stats = get_metric(m, t.kind).stats(pred, target).cpu()
                sums[t.name, m] = sums[t.name, m] + stats if (t.name, m) in sums else stats
    model.train(was_training)
    result: TaskMetrics = {}
    for (task, m), stats in sums.items():
        result.setdefault(task, {})[m] = get_metric(m, space.task(task).kind).finish(stats)
    return result


def train_model(
    model: nn.Module,
    space: SearchSpace,
    bundle: DatasetBundle,
    *,
    device: torch.device,
    seed: int,
    epochs: int | None = None,
    progress: bool = False,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` on ``bundle.train`` with the space's budget, then evaluate on val and test."""
    from tqdm.auto import tqdm

    cfg = space.training
    epochs = epochs or cfg.epochs
    model.to(device).train()
    train, val, test = (s.only(space.task_names).to(device) for s in (bundle.train, bundle.val, bundle.test))
    balancer = make_balancer(cfg.balancing, space.task_names, seed=seed, device=device)
    shared = shared_parameters(model)
    optimizer = make_optimizer(optimizer_params(list(model.parameters()), balancer), cfg)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    schedule = _schedule(optimizer, cfg, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    history, start = [], time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        totals: dict[str, float] = {}
        balancer.start_epoch(epoch, history)
        for step, batch in enumerate(train.batches(cfg.batch_size, shuffle=True, generator=generator)):
            losses = task_losses(model(batch.inputs), batch.targets, space, batch.masks)
            check_finite(losses, f"epoch {epoch}, step {step}")
            optimizer.zero_grad(set_to_none=True)
            balancer.backward(losses, shared)
            optimizer.step()
            schedule.step()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) / steps_per_epoch
        totals["total"] = sum(totals.values())
        history.append(totals)
        bar.set_postfix(loss=f"{totals['total']:.3f}")
    seconds = time.perf_counter() - start
    return TrainResult(
        val=evaluate(model, val, space), test=evaluate(model, test, space),
        epochs=epochs, seconds=seconds, history=tuple(history),
    )


Scheduler = torch.optim.lr_scheduler.LRScheduler
SCHEDULES: Registry[Callable[[torch.optim.Optimizer, int], Scheduler]] = Registry("schedule")
SCHEDULES.add("cosine", lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1)))
SCHEDULES.add("constant", lambda opt, steps: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0))


def _schedule(optimizer: torch.optim.Optimizer, cfg: TrainingConfig, total_steps: int) -> Scheduler:
    return SCHEDULES.get(cfg.schedule)(optimizer, total_steps)
