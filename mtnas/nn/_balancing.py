"""Loss balancing: how the task losses of one step become parameter gradients.

A balancer (one per training run) weighs the already task-weighted losses of ``task_losses`` and
does the backward pass itself, so gradient methods can change per-task gradients before they are
summed. ``training.balancing`` names one; ``equal`` (the default) is the plain sum.

Contract of every entry of ``BALANCERS`` (a factory ``(tasks, seed=..., device=...) -> Balancer``):

- ``parameters()``: learnable weights; the caller adds them to its optimizer.
- ``start_epoch(epoch, history)``: called before every epoch with each finished epoch's mean
  task losses (``history[e][task]``), oldest first.
- ``backward(losses, shared_params, scale=None)``: sets ``.grad`` of the parameters and returns
  the scalar it optimised (for logging). ``shared_params`` are the parameters all tasks may
  share (the backbone); the others are task-specific. ``scale`` (a ``GradScaler.scale``) maps a
  loss to what is backpropagated.
- ``state_dict()`` / ``load_state_dict()``: what a checkpoint must keep to resume exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mtnas.core import Registry

__all__ = [
    "BALANCERS",
    "DWA",
    "Balancer",
    "Equal",
    "PCGrad",
    "Uncertainty",
    "make_balancer",
    "optimizer_params",
    "pcgrad_project",
    "shared_parameters",
]

Scale = Callable[[torch.Tensor], torch.Tensor]


class Balancer:
    """The plain sum of the task losses (``equal``); the base of the other balancers."""

    def __init__(self, tasks: Sequence[str], *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.tasks = tuple(tasks)

    def parameters(self) -> list[nn.Parameter]:
        return []

    def start_epoch(self, epoch: int, history: Sequence[Mapping[str, float]]) -> None:
        return None

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The scalar to backpropagate."""
        return sum(losses.values())  # type: ignore[return-value]

    def backward(
        self, losses: Mapping[str, torch.Tensor], shared_params: Sequence[nn.Parameter], *, scale: Scale | None = None
    ) -> torch.Tensor:
        total = self.combine(losses)
        (scale(total) if scale is not None else total).backward()
        return total.detach()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


Equal = Balancer


class Uncertainty(Balancer):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, "Multi-Task Learning Using
    Uncertainty to Weigh Losses for Scene Geometry and Semantics", CVPR 2018).

    One learnable ``s_t = log sigma_t^2`` per task, loss ``sum_t exp(-s_t) L_t + s_t``, without the
    paper's 1/2 factors (as LibMTL does), so every task is treated alike whatever its kind:
    ``d/ds_t = 1 - exp(-s_t) L_t``, whose zero is ``s_t = log L_t``. ``s_t`` starts at 0 (weight 1).
    """

    def __init__(self, tasks: Sequence[str], *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks), device=device))  # (T,)

    def parameters(self) -> list[nn.Parameter]:
        return [self.log_vars]

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        s = dict(zip(self.tasks, self.log_vars))
        return sum(torch.exp(-s[t]) * loss + s[t] for t, loss in losses.items())  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        return {"log_vars": self.log_vars.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            self.log_vars.copy_(state["log_vars"])


class DWA(Balancer):
    """Dynamic weight average (Liu, Johns and Davison, "End-to-End Multi-Task Learning with
    Attention", CVPR 2019, MTAN).

    Epoch e weighs task t by ``T * softmax_t(r_t / temperature)`` with ``r_t = L_t(e-1) / L_t(e-2)``
    the ratio of its mean training losses over the last two epochs: the task whose loss fell least
    gets the largest weight. Weights sum to the number of tasks T and are 1 in the first two epochs.
    The state is the caller's loss history, so a checkpoint needs nothing more.
    """

    temperature = 2.0

    def __init__(self, tasks: Sequence[str], *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        super().__init__(tasks)
        self.weights = dict.fromkeys(self.tasks, 1.0)

    def start_epoch(self, epoch: int, history: Sequence[Mapping[str, float]]) -> None:
        if epoch < 2 or len(history) < 2:
            self.weights = dict.fromkeys(self.tasks, 1.0)
            return
        last, before = history[-1], history[-2]
        ratios = {t: last[t] / before[t] if before[t] > 0 else 1.0 for t in self.tasks}
        top = max(ratios.values())
        exps = {t: math.exp((r - top) / self.temperature) for t, r in ratios.items()}  # shifted: no overflow
        norm = sum(exps.values())
        self.weights = {t: len(self.tasks) * e / norm for t, e in exps.items()}

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weights[t] * loss for t, loss in losses.items())  # type: ignore[return-value]


def pcgrad_project(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PCGrad's projection of per-task gradients ``grads`` (T, P); returns their sum (P,).

    For each task i, in a random order of the others j: where ``g_i . g_j < 0``, remove from g_i
    its component along g_j (``g_i -= (g_i . g_j) / |g_j|^2 g_j``); g_j stays the original.
    """
    projected = grads.clone()
    for i in range(len(grads)):
        g = projected[i]
        for j in torch.randperm(len(grads), generator=generator).tolist():
            if j == i:
                continue
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g -= dot / grads[j].dot(grads[j]).clamp_min(1e-20) * grads[j]
    return projected.sum(0)


class PCGrad(Balancer):
    """Projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task Learning",
    NeurIPS 2020).

    Each task's gradient on the shared parameters is projected onto the normal plane of every
    other task's gradient it conflicts with (negative dot product), in a random order drawn from
    a seeded generator, and the projections are summed (``pcgrad_project``); task-specific
    parameters (heads) get their own task's gradient. Costs one backward pass per task.
    """

    def __init__(self, tasks: Sequence[str], *, seed: int = 0, device: torch.device | str = "cpu") -> None:
        super().__init__(tasks)
        self.generator = torch.Generator().manual_seed(seed)

    def backward(
        self, losses: Mapping[str, torch.Tensor], shared_params: Sequence[nn.Parameter], *, scale: Scale | None = None
    ) -> torch.Tensor:
        shared = [p for p in shared_params if p.requires_grad]
        if not shared:  # nothing shared, nothing to project: the plain sum
            return super().backward(losses, shared_params, scale=scale)
        names = list(losses)
        per_task = []  # (T, P) rows: each task's gradient on the shared parameters, flattened
        for n, name in enumerate(names):
            for p in shared:
                p.grad = None
            loss = losses[name]
            # backward, not autograd.grad: task-specific parameters accumulate their own gradient
            (scale(loss) if scale is not None else loss).backward(retain_graph=n < len(names) - 1)
            per_task.append(torch.cat([
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in shared
            ]))
        combined = pcgrad_project(torch.stack(per_task), self.generator)
        offset = 0
        for p in shared:
            p.grad = combined[offset : offset + p.numel()].view_as(p).to(p.dtype).clone()
            offset += p.numel()
        return sum(loss.detach() for loss in losses.values())  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])


BALANCERS: Registry[type[Balancer]] = Registry("loss balancing")
BALANCERS.add("equal", Equal)
BALANCERS.add("uncertainty", Uncertainty)
BALANCERS.add("dwa", DWA)
BALANCERS.add("pcgrad", PCGrad)


def make_balancer(name: str, tasks: Sequence[str], *, seed: int = 0, device: torch.device | str = "cpu") -> Balancer:
    return BALANCERS.get(name)(tasks, seed=seed, device=device)


def shared_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters tasks may share: the backbone blocks (``model.layers``, in BranchedNet and
    the supernet), or everything outside ``model.heads`` for another model."""
    layers = getattr(model, "layers", None)
    if isinstance(layers, nn.Module):
        return list(layers.parameters())
    heads = getattr(model, "heads", None)
    own = {id(p) for p in heads.parameters()} if isinstance(heads, nn.Module) else set()
    return [p for p in model.parameters() if id(p) not in own]


def optimizer_params(params: Sequence[nn.Parameter], balancer: Balancer) -> list[Any]:
    """What to hand the optimizer: ``params``, plus the balancer's weights in a group of their
    own without weight decay (decay would pull log-variances toward 0)."""
    extra = balancer.parameters()
    if not extra:
        return list(params)
    return [{"params": list(params)}, {"params": extra, "weight_decay": 0.0}]
