"""The routing supernet: K_l copies of every backbone block, wired by learnable parent choices.

A forward pass takes one sampled routing (``Routing.sample``), works out from the heads down which
nodes some task reaches, and computes each of those nodes exactly once, feeding it its chosen
parent's output scaled by the straight-through weight (value 1, gradient to the logits). Nodes no
task reaches are skipped, so a step costs at most sum_l K_l blocks whatever the number of tasks; a
per-task-path supernet (BMTAS, LibMTL's LTB) pays T blocks per layer. ``forward_soft`` mixes all
parents instead (every node computed), for soft routing.

Blocks and heads come from the same builders as ``BranchedNet``; ``inherit`` maps a derived tree's
nodes to their supernet copies so the tree can start from the searched weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtnas.model import build_heads, count_flops, count_params, load_pretrained
from mtnas.nn import BlockPlan
from mtnas.search._routing import DerivedTree, Routing, RoutingSample, space_branches
from mtnas.space import SearchSpace

__all__ = ["Supernet"]


def _through(x: torch.Tensor, weights: torch.Tensor | None, row: int, col: int) -> torch.Tensor:
    """``x`` times the straight-through route weight (value 1): carries the gradient to the logits.

    Weight steps sample routes without gradient; there the product is skipped.
    """
    if weights is None or not weights.requires_grad:
        return x
    return x * weights[row, col]


def _mix(logits: torch.Tensor, tau: float | None) -> torch.Tensor:
    """Soft route weights: softmax of ``logits``, or a Gumbel-softmax sample at ``tau``."""
    return logits.softmax(-1) if tau is None else F.gumbel_softmax(logits, tau=tau, hard=False)


class Supernet(nn.Module):
    """Blocks ``layers[l][k]`` (K_l copies of block l), task heads, and their routing.

    Args:
        plans: one block plan per backbone layer.
        heads: one head per task.
        routing: the learnable routes (its ``branches`` fix K_l).
    """

    def __init__(self, *, plans: Sequence[BlockPlan], heads: nn.ModuleDict, routing: Routing) -> None:
        super().__init__()
        if len(plans) != routing.num_layers:
            raise ValueError(f"routing has {routing.num_layers} layers, backbone has {len(plans)}")
        self.plans = tuple(plans)
        self.layers = nn.ModuleList(
            nn.ModuleList(plan.make() for _ in range(k)) for plan, k in zip(plans, routing.branches)
        )
        self.heads = heads
        self.routing = routing

    @classmethod
    def from_space(
        cls, space: SearchSpace, branches: int | Sequence[int] | None = None, *, pretrained: bool = True
    ) -> Supernet:
        """The supernet of a resolved space; ``branches`` overrides the space's K per layer.

        With ``backbone.weights`` set (and ``pretrained``), every copy of a layer's block starts
        from the file's block (all K equal); heads stay fresh. See ``mtnas.pretrained``.
        """
        plans = space.backbone.plan(space.input_shape, pretrained=pretrained)
        routing = Routing(space.task_names, space_branches(space, branches), space.can_branch)
        net = cls(plans=plans, heads=build_heads(space, plans[-1].out_shape), routing=routing)
        if pretrained and space.backbone.weights is not None:
            load_pretrained(net.layers, space.backbone)
        return net

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.routing.tasks

    def weight_parameters(self) -> list[nn.Parameter]:
        """Block and head weights (everything but the routing logits)."""
        return [p for name, p in self.named_parameters() if not name.startswith("routing.")]

    # -- forward -------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, sample: RoutingSample) -> dict[str, torch.Tensor]:
        """Task outputs for one sampled tree; only the nodes it uses are computed, once each."""
        feats: dict[int, torch.Tensor] = {k: self.layers[0][k](x) for k in sample.used[0]}
        for layer in range(1, len(self.layers)):
            weights, parents = sample.node_weights[layer], sample.parents[layer]
            new = {}
            for k in sample.used[layer]:
                j = parents[k]
                new[k] = self.layers[layer][k](_through(feats[j], weights, k, j))
            feats = new
        w = sample.head_weights
        return {
            task: head(_through(feats[k], w, t, k))
            for t, (task, head), k in zip(range(len(self.heads)), self.heads.items(), sample.head_choice)
        }

    def forward_soft(self, x: torch.Tensor, tau: float | None = None) -> dict[str, torch.Tensor]:
        """Every node fed the mix of its parents: softmax weights, or Gumbel-softmax at ``tau``."""
        feats = self.last_features_soft(x, tau)  # (K_last, B, ...)
        w = _mix(self.routing.head_logits, tau)  # (T, K_last)
        mixed = torch.einsum("tk,k...->t...", w, feats)
        return {task: head(mixed[t]) for t, (task, head) in enumerate(self.heads.items())}

    def last_features_soft(self, x: torch.Tensor, tau: float | None = None) -> torch.Tensor:
        """(K_last, B, ...) the last layer's node outputs, every node fed the mix of its parents."""
        feats = torch.stack([block(x) for block in self.layers[0]])  # (K_0, B, ...)
        for layer in range(1, len(self.layers)):
            logits = self.routing.layer_logits(layer)
            if logits is None:
                inputs = list(feats)
            else:
                w = _mix(logits, tau)  # (K_l, K_{l-1})
                inputs = list(torch.einsum("kj,j...->k...", w, feats))
            feats = torch.stack([block(inp) for block, inp in zip(self.layers[layer], inputs)])
        return feats

    # -- cost ----------------------------------------------------------------------------------

    def block_costs(self, metric: str = "flops") -> tuple[list[float], float]:
        """Cost of one copy of each layer's block, and of all heads together (params or FLOPs)."""
        if metric == "params":
            blocks = [float(count_params(layer[0])) for layer in self.layers]
            return blocks, float(sum(count_params(h) for h in self.heads.values()))
        blocks = [float(count_flops(layer[0], plan.in_shape)) for layer, plan in zip(self.layers, self.plans)]
        last = self.plans[-1].out_shape
        return blocks, float(sum(count_flops(h, last) for h in self.heads.values()))

    # -- inheritance ---------------------------------------------------------------------------

    def inherit(self, derived: DerivedTree) -> dict[str, torch.Tensor]:
        """A ``BranchedNet`` state dict for ``derived.tree`` filled from this supernet's copies."""
        tree, state = derived.tree, {}
        for layer in range(tree.num_layers):
            for j, group in enumerate(tree.groups_at(layer)):
                k = derived.node_of[layer, group]
                for name, value in self.layers[layer][k].state_dict().items():
                    state[f"layers.{layer}.{j}.{name}"] = value.detach().clone()
        for name, value in self.heads.state_dict().items():
            state[f"heads.{name}"] = value.detach().clone()
        return state
