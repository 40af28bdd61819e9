"""Routing methods: what a routing step of the differentiable search optimises.

``plain``: the task losses of a sampled tree on held-out data plus ``cost_weight`` times the
expected cost (BMTAS, Bruggemann et al. 2020; Learning to Branch, Guo et al. 2020). Its blind
spot: a head's routing gradient sees only that task's own loss. A task that is solved on any
path (the gratings of ``digit_gratings``) is indifferent to where it goes, so the cost term
merges it into another group's nodes, though sharing those weights is what hurts the other
group. Nothing in that gradient measures the harm one task's sharing does to another.

``affinity``: adds that signal. During the search it measures, inside the supernet, how the
tasks' gradients agree on each layer's weights when they share one path (per-layer gradient
cosine, cf. TAG's lookahead affinity, Fifty et al. 2021, to first order: a step on task i
changes task j's loss by -lr * g_i . g_j). The routing loss then rewards two tasks for sharing a
node at layer l in proportion to their affinity at l above the layer's mean, and penalises it
below the mean (``affinity_weight``): tasks whose gradients pull the shared weights apart are
pushed onto separate copies, while the cost term keeps everything else together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from mtnas.data import TaskData
from mtnas.registry import Registry
from mtnas.space import SearchConfig, SearchSpace
from mtnas.supernet import Supernet
from mtnas.train import task_losses

__all__ = ["METHODS", "RoutingContext", "RoutingMethod", "co_assignment", "path_probs"]


@dataclass
class RoutingContext:
    """What a routing method may use: the supernet, the space, the hyperparameters and costs."""

    net: Supernet
    space: SearchSpace
    cfg: SearchConfig
    block_costs: list[float]
    head_cost: float


class RoutingMethod(Protocol):
    def init(self, ctx: RoutingContext) -> Any: ...

    def after_weight_step(self, ctx: RoutingContext, state: Any, batch: TaskData, warm: bool) -> None: ...

    def routing_loss(self, ctx: RoutingContext, state: Any, batch: TaskData, tau: float) -> torch.Tensor: ...

    def after_epoch(self, ctx: RoutingContext, state: Any, epoch: int, warm: bool) -> None: ...


METHODS: Registry[RoutingMethod] = Registry("routing method")


def path_probs(net: Supernet) -> list[torch.Tensor]:
    """``P[l]`` (T, K_l): probability that each task's path passes node k of layer l."""
    q = net.routing.parent_probs()
    p = net.routing.head_probs()  # (T, K_last)
    out = [p]
    for layer in range(net.routing.num_layers - 1, 0, -1):
        p = p @ q[layer]  # (T, K_l) @ (K_l, K_{l-1})
        out.append(p)
    return out[::-1]


def co_assignment(net: Supernet) -> list[torch.Tensor]:
    """``S[l]`` (T, T): probability that tasks i and j share a node at layer l."""
    return [p @ p.T for p in path_probs(net)]


class Plain:
    """Task losses of a sampled tree + cost_weight * expected cost."""

    def init(self, ctx: RoutingContext) -> None:
        return None

    def after_weight_step(self, ctx: RoutingContext, state: Any, batch: TaskData, warm: bool) -> None:
        return None

    def routing_loss(self, ctx: RoutingContext, state: Any, batch: TaskData, tau: float) -> torch.Tensor:
        sample = ctx.net.routing.sample(tau, hard=True)
        losses = task_losses(ctx.net(batch.inputs, sample), batch.targets, ctx.space)
        cost = ctx.net.routing.expected_cost(ctx.block_costs, ctx.head_cost)
        return sum(losses.values()) + ctx.cfg.cost_weight * cost

    def after_epoch(self, ctx: RoutingContext, state: Any, epoch: int, warm: bool) -> None:
        return None


@dataclass
class AffinityState:
    """Running per-layer task affinity (T, T) and how many measurements made it."""

    affinity: list[torch.Tensor] = field(default_factory=list)
    count: int = 0
    steps: int = 0


class Affinity(Plain):
    """Plain routing plus a per-layer inter-task affinity prior on sharing (see module docstring)."""

    every = 4  # measure the affinity on every 4th weight step

    def init(self, ctx: RoutingContext) -> AffinityState:
        t, n = len(ctx.space.tasks), ctx.net.routing.num_layers
        return AffinityState([torch.zeros(t, t) for _ in range(n)])

    def after_weight_step(self, ctx: RoutingContext, state: AffinityState, batch: TaskData, warm: bool) -> None:
        state.steps += 1
        if state.steps % self.every:
            return
        cos = gradient_cosines(ctx.net, batch, ctx.space)
        state.count += 1
        for layer, c in enumerate(cos):
            state.affinity[layer] += (c - state.affinity[layer]) / state.count

    def routing_loss(self, ctx: RoutingContext, state: AffinityState, batch: TaskData, tau: float) -> torch.Tensor:
        loss = super().routing_loss(ctx, state, batch, tau)
        if not state.count or not ctx.cfg.affinity_weight:
            return loss
        t = len(ctx.space.tasks)
        off = ~torch.eye(t, dtype=torch.bool)
        prior = 0.0
        for layer, shared in enumerate(co_assignment(ctx.net)):
            a = state.affinity[layer].to(shared.device)
            centred = (a - a[off].mean()) * off  # above the layer's mean: reward sharing
            prior = prior - (centred * shared).sum() / (t * (t - 1))
        return loss + ctx.cfg.affinity_weight * prior


def gradient_cosines(net: Supernet, batch: TaskData, space: SearchSpace) -> list[torch.Tensor]:
    """Per-layer cosine between the tasks' gradients when all tasks share one random path."""
    routing = net.routing
    with torch.no_grad():
        path = [int(torch.randint(k, ())) for k in routing.branches]
    feats = batch.inputs
    params: list[list[torch.nn.Parameter]] = []
    for layer, blocks in enumerate(net.layers):
        # A non-branching layer keeps the node index of the layer below.
        k = path[layer] if routing.can_branch[layer] or layer == 0 else path[layer - 1]
        path[layer] = k
        feats = blocks[k](feats)
        params.append([p for p in blocks[k].parameters() if p.requires_grad])
    outputs = {task: head(feats) for task, head in net.heads.items()}
    losses = task_losses(outputs, batch.targets, space)
    flat = [p for layer in params for p in layer]
    grads = []
    for task in space.task_names:
        g = torch.autograd.grad(losses[task], flat, retain_graph=True, allow_unused=True)
        grads.append([torch.zeros_like(p) if gi is None else gi for p, gi in zip(flat, g)])
    out, start = [], 0
    for layer_params in params:
        end = start + len(layer_params)
        g = torch.stack([torch.cat([x.reshape(-1) for x in task_g[start:end]]) for task_g in grads])  # (T, P_l)
        g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
        out.append((g @ g.T).detach().cpu())
        start = end
    return out


METHODS.add("plain", Plain())
METHODS.add("affinity", Affinity())
