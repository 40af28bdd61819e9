"""Routing methods: what a routing step of the supernet search optimises.

``plain``: the task losses of a sampled tree on held-out data plus ``cost_weight`` times the
expected cost (BMTAS, Bruggemann et al. 2020; Learning to Branch, Guo et al. 2020). Its blind
spot: a head's routing gradient sees only that task's own loss. A task that is solved on any
path (the gratings of ``digit_gratings``) is indifferent to where it goes, so the cost term
merges it into another group's nodes, though sharing those weights is what hurts the other
group. Nothing in that gradient measures the harm one task's sharing does to another.

``affinity`` (the default) adds that signal, measured inside the supernet:

1. Warm-up trains one shared path (node 0 of every layer: the all-shared tree). On every second
   step (every ceil(T / 3)-th with more than 6 tasks, so its cost stays flat in T) it measures a
   lookahead affinity on a fresh batch (TAG, Fifty et al. 2021): for each task i, one SGD step of
   ``lookahead_lr`` on i's loss alone, and the drop of every task j's loss, weighted by j's loss:
   ``M[i, j] = (L_j(w) - L_j(w - lr g_i)) * L_j(w)``. The weighting makes harm count where a task
   still has something to lose: a solved task (loss near 0) is neither hurt nor protected, so the
   cost term is free to merge it with other solved tasks. ``M + M.T`` is averaged with an
   exponential moving average, so the late warm-up, where easy tasks are solved, dominates.
   Two cheaper measurements were tried and dropped (``benchmarks/README.md``): the first-order
   form ``lr g_i . g_j L_j`` (one backward pass per task; it agrees with the lookahead at
   initialisation but loses the curvature term later, and recovery fell), and measuring only the
   second half of the warm-up.
2. At the end of warm-up every copy of a layer is loaded with the warmed-up shared block, so
   the routing phase starts from shared features rather than from random copies.
3. Routing steps add ``-affinity_weight * sum_l sum_{i != j} A[i, j] * P_l(i, j share a node)``,
   with P_l from the routing probabilities (``co_assignment``) and A the affinity in units of the
   mean self-affinity (``scaled_affinity``: what a task's step does for its own loss): helpful
   pairs are pulled onto one node, harmful pairs pushed apart, and indifferent pairs left to the
   cost term. Two choices make the one default hold across spaces:

   * The unit. Rescaling the strongest pair to +-1 (the first version) turned noise into
     conflict on a space without structure (``synth_null``); next to the self-affinity, noise
     between unrelated tasks stays small.
   * No division by the number of pairs. Each task's routing gradient sees its own loss at full
     weight (the task losses are summed), so the prior's pull on one task must not shrink as
     tasks are added: summed over its partners, a task with nine helpful partners among 39 is
     pulled as hard as one with two among five. Divided by T (T - 1), the pull at 40 tasks is
     1/50 of that at six, too weak to group them. At six tasks the weight 0.1 is exactly the
     former weight 3 over T (T - 1) = 30.

``benchmarks/README.md`` has what this does to planted recovery against ``plain``, and the
variants that did not work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from mtnas.data import TaskData
from mtnas.search._lookahead import lookahead_losses
from mtnas.search._routing import RoutingSample
from mtnas.search._supernet import Supernet
from mtnas.space import SearchConfig, SearchSpace
from mtnas.train import task_losses

__all__ = ["Affinity", "Plain", "RoutingContext", "RoutingMethod", "affinity_prior", "co_assignment", "path_probs",
           "scaled_affinity"]


@dataclass
class RoutingContext:
    """What a routing method may use: the supernet, the space, the hyperparameters and costs."""

    net: Supernet
    space: SearchSpace
    cfg: SearchConfig
    block_costs: list[float]
    head_cost: float
    train: TaskData  # the part of the training split that weight steps use


class RoutingMethod(Protocol):
    def init(self, ctx: RoutingContext) -> Any: ...

    def weight_sample(self, ctx: RoutingContext, state: Any, tau: float, warm: bool) -> RoutingSample: ...

    def after_weight_step(self, ctx: RoutingContext, state: Any, batch: TaskData, warm: bool) -> None: ...

    def routing_loss(self, ctx: RoutingContext, state: Any, batch: TaskData, tau: float) -> torch.Tensor: ...

    def after_epoch(self, ctx: RoutingContext, state: Any, epoch: int, warm: bool) -> None: ...


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

    def weight_sample(self, ctx: RoutingContext, state: Any, tau: float, warm: bool) -> RoutingSample:
        """The tree a weight step trains: random uniform paths in warm-up, then Gumbel samples."""
        return ctx.net.routing.sample(tau, hard=True, frozen=warm)

    def after_weight_step(self, ctx: RoutingContext, state: Any, batch: TaskData, warm: bool) -> None:
        return None

    def routing_loss(self, ctx: RoutingContext, state: Any, batch: TaskData, tau: float) -> torch.Tensor:
        sample = ctx.net.routing.sample(tau, hard=True)
        losses = task_losses(ctx.net(batch.inputs, sample), batch.targets, ctx.space, batch.masks)
        cost = ctx.net.routing.expected_cost(ctx.block_costs, ctx.head_cost)
        return sum(losses.values()) + ctx.cfg.cost_weight * cost

    def after_epoch(self, ctx: RoutingContext, state: Any, epoch: int, warm: bool) -> None:
        return None


@dataclass
class AffinityState:
    """Running pairwise task affinity (T, T), the sampler of measurement batches, counters."""

    affinity: torch.Tensor
    generator: torch.Generator
    count: int = 0
    steps: int = 0
    prior: torch.Tensor | None = None  # ``scaled_affinity`` on the routing's device, fixed after warm-up


class Affinity(Plain):
    """Plain routing plus a lookahead-affinity prior on sharing (see the module docstring)."""

    every = 2  # measure the affinity on every 2nd weight step of the warm-up ...
    tasks_per_step = 3  # ... and with many tasks less often: one measurement costs T lookaheads
    batch = 256  # samples per measurement
    lookahead_lr = 0.05
    ema = 0.1

    def init(self, ctx: RoutingContext) -> AffinityState:
        t = len(ctx.space.tasks)
        return AffinityState(torch.zeros(t, t), torch.Generator().manual_seed(int(torch.randint(2**31, ()))))

    def weight_sample(self, ctx: RoutingContext, state: Any, tau: float, warm: bool) -> RoutingSample:
        # Warm-up trains one shared path (the all-shared tree), where the affinity is measured.
        return ctx.net.routing.shared_path() if warm else super().weight_sample(ctx, state, tau, warm)

    def after_epoch(self, ctx: RoutingContext, state: AffinityState, epoch: int, warm: bool) -> None:
        if epoch == ctx.cfg.warmup_epochs - 1:
            # Every copy starts the routing phase from the warmed-up shared blocks.
            for blocks in ctx.net.layers:
                for block in blocks[1:]:
                    block.load_state_dict(blocks[0].state_dict())
            if state.count:  # measured in warm-up only: scaled and moved once, not every routing step
                state.prior = scaled_affinity(state.affinity).to(ctx.net.routing.head_logits.device)

    def after_weight_step(self, ctx: RoutingContext, state: AffinityState, batch: TaskData, warm: bool) -> None:
        state.steps += 1
        # At most ~tasks_per_step lookaheads per weight step on average, so a warm-up epoch costs
        # about the same at 40 tasks as at 6 (T = 6: every 2nd step, as measured on digit_gratings).
        every = max(self.every, math.ceil(len(ctx.space.tasks) / self.tasks_per_step))
        if not warm or state.steps % every:
            return
        rows = torch.randint(len(ctx.train), (self.batch,), generator=state.generator).to(ctx.train.inputs.device)
        m = lookahead_affinity(ctx.net, ctx.train.select(rows), ctx.space, self.lookahead_lr)
        state.count += 1
        # An exponential average: late measurements, where solved tasks stop counting, dominate.
        rate = max(1.0 / state.count, self.ema)
        state.affinity += rate * (m + m.T - state.affinity)

    def routing_loss(self, ctx: RoutingContext, state: AffinityState, batch: TaskData, tau: float) -> torch.Tensor:
        loss = super().routing_loss(ctx, state, batch, tau)
        if state.prior is None or not ctx.cfg.affinity_weight:
            return loss
        return loss + ctx.cfg.affinity_weight * affinity_prior(ctx.net, state.prior)


def affinity_prior(net: Supernet, a: torch.Tensor) -> torch.Tensor:
    """``-sum_l sum_{i != j} a[i, j] * P_l(i, j share a node)``: lower where helpful pairs share.

    Summed, not averaged over the pairs: a task's pull towards its partners does not shrink as
    tasks are added, as its own loss in the routing step does not.
    """
    return -sum((a * shared).sum() for shared in co_assignment(net))


def scaled_affinity(affinity: torch.Tensor) -> torch.Tensor:
    """The off-diagonal affinity in units of the mean self-affinity (a task's step on its own loss):
    scale-free, and noise between unrelated tasks stays small next to it (rescaling the strongest
    pair to +-1 made noise look like conflict on a space without structure)."""
    off = ~torch.eye(len(affinity), dtype=torch.bool)
    return affinity * off / affinity.diagonal().mean().clamp_min(1e-12)


def lookahead_affinity(net: Supernet, batch: TaskData, space: SearchSpace, lr: float) -> torch.Tensor:
    """(T, T) lookahead affinity on the shared path (node 0 of every layer).

    ``M[i, j] = (L_j(w) - L_j(w - lr * g_i)) * L_j(w)``: how much a step on task i's loss lowers
    task j's loss (TAG, Fifty et al. 2021), weighted by j's loss, so harm counts where a task still
    has something to lose; a solved task (loss near 0) neither suffers nor causes weight.
    """
    base, stepped = lookahead_losses(net, batch, space, lr)
    with torch.no_grad():
        return ((base - stepped) * base).detach().cpu()
