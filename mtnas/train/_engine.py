"""The one training engine: optimizer, learning-rate schedule, loss balancing, precision, NaN checks.

Every loop that trains weights runs on an :class:`Engine`: the fixed-tree training behind trials,
baselines and ``mtnas train`` (:func:`train_model`), the supernet's weight steps
(``mtnas.search``) and ``mtnas retrain`` (with autocast, a gradient scaler for fp16 and DDP). The
caller owns the data order and the forward pass; one ``step`` does the rest::

    engine.start_epoch(epoch)
    for batch in ...:
        engine.step(lambda: model(batch.inputs), batch, where=f"epoch {epoch}, step {i}")
    means = engine.end_epoch()   # each task's mean training loss (what DWA reads)

Small datasets live on the training device whole, so an epoch is a loop over index slices with
no DataLoader. A NaN or infinite loss raises :class:`NonFiniteLossError` naming the task and step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mtnas.core import MtnasError, Registry
from mtnas.data import DatasetBundle, TaskData
from mtnas.nn import make_balancer, optimizer_params, shared_parameters
from mtnas.space import SearchSpace, TrainingConfig
from mtnas.train._device import autocast
from mtnas.train._resume import Checkpoint, capture, restore, resume_problem
from mtnas.train._tasks import TaskMetrics, evaluate, task_losses
from mtnas.train._trackers import TrackedRun, run_name, training_logs

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Engine",
    "NonFiniteLossError",
    "TrainResult",
    "check_finite",
    "train_model",
]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names the task and the step."""


OPTIMIZERS: Registry[Callable[[list[Any], TrainingConfig], torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.add("adam", lambda ps, c: torch.optim.Adam(ps, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.add("adamw", lambda ps, c: torch.optim.AdamW(ps, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.add("sgd", lambda ps, c: torch.optim.SGD(ps, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay))

Scheduler = torch.optim.lr_scheduler.LRScheduler
#: ``training.schedule``: a learning-rate schedule over all the steps of a run.
SCHEDULES: Registry[Callable[[torch.optim.Optimizer, int], Scheduler]] = Registry("schedule")
SCHEDULES.add("cosine", lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1)))
SCHEDULES.add("constant", lambda opt, steps: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0))


def check_finite(losses: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise :class:`NonFiniteLossError` naming the first task whose loss is NaN or infinite."""
    if not losses or bool(torch.isfinite(torch.stack([v.detach().float() for v in losses.values()])).all()):
        return  # one device sync per step, not one per task
    name, value = next((n, v) for n, v in losses.items() if not torch.isfinite(v))
    raise NonFiniteLossError(f"loss of task {name!r} is {float(value)} at {where}")


class Engine:
    """Weight updates of one training run, configured by the space's ``training`` section.

    Args:
        space: a resolved space: its tasks (losses) and ``training`` (optimizer, lr, schedule,
            balancing).
        params: every trainable weight (the balancer's own weights are added in a group of theirs).
        shared: the weights tasks share (what PCGrad projects).
        total_steps: optimizer steps of the whole run (the schedule's length).
        device: where the balancer's weights live.
        seed: seeds the balancer (PCGrad's projection order).
        precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast and a gradient scaler).
        world_size: processes of a ``torchrun`` launch; with more than one the balancer's weights
            (outside DDP) are averaged by hand and the epoch means over ranks.
    """

    def __init__(
        self, *, space: SearchSpace, params: Sequence[nn.Parameter], shared: Sequence[nn.Parameter], total_steps: int,
        device: torch.device, seed: int, precision: str = "fp32", world_size: int = 1,
    ) -> None:
        cfg = space.training
        self.space, self.device, self.precision, self.world_size = space, torch.device(device), precision, world_size
        self.balancer = make_balancer(cfg.balancing, space.task_names, seed=seed, device=device)
        self.shared = list(shared)
        self.optimizer = OPTIMIZERS.get(cfg.optimizer)(optimizer_params(list(params), self.balancer), cfg)
        self.schedule = SCHEDULES.get(cfg.schedule)(self.optimizer, total_steps)
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.history: list[dict[str, float]] = []  # each finished epoch's mean task losses
        self._sums: dict[str, torch.Tensor] = {}
        self._steps = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def start_epoch(self, epoch: int) -> None:
        self.balancer.start_epoch(epoch, self.history)
        self._sums, self._steps = {}, 0

    def step(self, forward: Callable[[], Mapping[str, torch.Tensor]], batch: TaskData, *, where: str) -> dict[str, torch.Tensor]:
        """One update: ``forward()`` under autocast, the task losses of ``batch``, a NaN check,
        the balanced backward pass, the optimizer and schedule steps. Returns the losses."""
        with self.autocast():
            losses = task_losses(forward(), batch.targets, self.space, batch.masks)
        check_finite(losses, where)
        self.optimizer.zero_grad(set_to_none=True)
        self.balancer.backward(losses, self.shared, scale=self.scaler.scale if self.scaler is not None else None)
        if self.world_size > 1:  # outside DDP: average the balancer's weights' gradients by hand
            for p in self.balancer.parameters():
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world_size
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.schedule.step()
        for name, value in losses.items():
            value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value
        self._steps += 1
        return losses

    def end_epoch(self) -> dict[str, float]:
        """Each task's mean loss over the epoch's steps (averaged over ranks), kept in ``history``."""
        names = list(self._sums)
        means = torch.stack([self._sums[t] for t in names]) / max(self._steps, 1) if names else torch.zeros(0)
        if self.world_size > 1:
            torch.distributed.all_reduce(means)
            means /= self.world_size
        epoch = dict(zip(names, means.tolist()))
        self.history.append(epoch)
        return epoch

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: TaskData) -> TaskMetrics:
        with self.autocast():
            return evaluate(model, split, self.space)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume exactly (the loss history comes with it)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "balancer": self.balancer.state_dict(),
            "history": self.history,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.balancer.load_state_dict(state.get("balancer", {}))
        self.history = [dict(h) for h in state["history"]]


@dataclass(frozen=True)
class TrainResult:
    """Per-task metrics on val and test after training, and the per-epoch mean task losses (of
    every epoch, those before a resumed checkpoint's stop too); the training's checkpoint at its
    stop when asked for."""

    val: TaskMetrics
    test: TaskMetrics
    epochs: int
    seconds: float
    history: tuple[dict[str, float], ...]
    checkpoint: Checkpoint | None = None


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
    monitor: Callable[[int, TaskMetrics], None] | None = None,
    before_step: Callable[[int, float, TaskData], None] | None = None,
    stop: int | None = None,
    track: Sequence[TrackedRun] | None = None,
    resume: Checkpoint | None = None,
    checkpoint: bool = False,
) -> TrainResult:
    """Train ``model`` on ``bundle.train`` with the space's budget, then evaluate on val and test.

    ``monitor(epoch, val_metrics)`` (optional) sees the validation metrics after every epoch but the
    last; it may raise to end the training there (a pruned trial, say). ``before_step(step, lr,
    batch)`` (optional) is called before every optimizer step with the step's number (from 0), the
    learning rate it will use and its batch (TAG measures its lookahead affinity there). ``stop``
    ends the training after that many epochs of the ``epochs``-epoch schedule (the first part of
    a whole training, whose learning rate has not decayed yet).

    ``resume`` goes on from a checkpoint of the same schedule (``model`` built as for a fresh
    training; the checkpoint's weights replace its own) to ``stop``: the same weights and metrics
    as training to ``stop`` straight (``mtnas.train._resume``); one that does not fit is an
    ``MtnasError`` of one line. ``checkpoint`` returns the training's state at its stop in the
    result (``TrainResult.checkpoint``), which a later call resumes from. ``seconds`` count the
    resumed checkpoint's.

    Inside a ``mtnas.train.tracking`` block, every epoch's mean task losses, validation metrics and
    learning rate go to its trackers (``mtnas.train.epoch_scalars``), one run per entry of
    ``track`` (default: one run named after ``desc``, every task).
    """
    from tqdm.auto import tqdm

    cfg = space.training
    epochs = epochs or cfg.epochs
    model.to(device).train()
    train, val, test = (s.only(space.task_names).to(device) for s in (bundle.train, bundle.val, bundle.test))
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    engine = Engine(space=space, params=list(model.parameters()), shared=shared_parameters(model),
                    total_steps=epochs * steps_per_epoch, device=device, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    last, first, before = min(stop or epochs, epochs), 0, 0.0
    if resume is not None:
        problem = resume_problem(resume, model, engine, generator, seed=seed, epochs=epochs, stop=last,
                                 tasks=space.task_names)
        if problem is not None:
            raise MtnasError(f"{desc}: cannot resume from the checkpoint after epoch {resume.epoch}: {problem}")
        restore(resume, model, engine, generator)
        first, before = resume.epoch, resume.seconds
    start = time.perf_counter()
    bar = tqdm(range(first, last), desc=desc, disable=not progress, leave=False)
    seen: TaskMetrics | None = None  # the validation metrics after the last epoch, when measured
    with training_logs(track or [TrackedRun(run_name(desc))], seed=seed, epochs=f"{last} of {epochs}",
                       **({"resumed_after": first} if first else {})) as logs:
        for epoch in bar:
            engine.start_epoch(epoch)
            lr = engine.lr
            for step, batch in enumerate(train.batches(cfg.batch_size, shuffle=True, generator=generator)):
                if before_step is not None:
                    before_step(epoch * steps_per_epoch + step, engine.lr, batch)
                engine.step(lambda: model(batch.inputs), batch, where=f"epoch {epoch}, step {step}")
            means = engine.end_epoch()
            bar.set_postfix(loss=f"{sum(means.values()):.3f}")
            watched = monitor is not None and epoch + 1 < epochs
            seen = evaluate(model, val, space) if logs or watched else None
            for log in logs:
                log.log_epoch(epoch + 1, means, seen, lr)
            if watched:
                monitor(epoch + 1, seen)
    seconds = before + time.perf_counter() - start
    kept = capture(model, engine, generator, seed=seed, epochs=epochs, epoch=last, seconds=seconds) if checkpoint \
        else None
    history = tuple({**h, "total": sum(h.values())} for h in engine.history)
    return TrainResult(
        val=seen if seen is not None else evaluate(model, val, space), test=evaluate(model, test, space),
        epochs=len(history), seconds=seconds, history=history, checkpoint=kept,
    )
