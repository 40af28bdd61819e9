"""Learnable sharing routes: per-node parent choices and per-task head choices.

Layer l of the supernet holds K_l nodes. Each node of a branching layer l >= 1 has logits over
the K_{l-1} nodes of the layer below (its parent); each task head has logits over the last
layer's nodes. A non-branching layer copies the node layout of the layer below (identity routes,
no logits); a non-branching layer 0 has one node. Sampling uses straight-through Gumbel-softmax
(Jang et al. 2017; one-path sampling as in GDAS, Dong & Yang 2019), so only the chosen parents
are computed while every logit of a used node still receives a gradient.

The expected cost of the sampled tree is differentiable and polynomial in the number of tasks:
with q = softmax(logits),
``P(last node k used) = 1 - prod_t (1 - q_t[k])`` and
``P(node j of layer l-1 used) = 1 - prod_k (1 - P(node k of layer l used) * q_{l,k}[j])``.
BMTAS (Bruggemann et al. 2020) instead enumerates task partitions, which grows as Bell numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtnas.space import SearchSpace
from mtnas.tree import BranchingTree

__all__ = ["DerivedTree", "Routing", "RoutingSample", "effective_branches", "tree_of"]


def effective_branches(branches: Sequence[int], can_branch: Sequence[bool]) -> tuple[int, ...]:
    """Nodes per layer: K_l where the layer may branch, else the layer below's count (1 at layer 0)."""
    out: list[int] = []
    for layer, (k, ok) in enumerate(zip(branches, can_branch)):
        out.append(k if ok else (out[-1] if layer else 1))
    return tuple(out)


def space_branches(space: SearchSpace, branches: int | Sequence[int] | None = None) -> tuple[int, ...]:
    """Nodes per layer of ``space`` (``effective_branches``): its ``routing`` settings, or
    ``branches`` instead (one K for every layer, at most the number of tasks, or one per layer)."""
    if branches is None:
        per_layer = space.branches_per_layer
    elif isinstance(branches, int):
        per_layer = (min(branches, len(space.tasks)),) * space.num_layers
    else:
        per_layer = tuple(branches)
    return effective_branches(per_layer, space.can_branch)


@dataclass(frozen=True)
class RoutingSample:
    """One sampled (or argmax) routing.

    Attributes:
        parents: ``parents[l][k]``: the chosen parent of node k at layer l (``parents[0]`` unused).
        node_weights: ``node_weights[l]`` (K_l, K_{l-1}) one-hot with straight-through gradients,
            or None for identity layers and layer 0.
        head_choice: (T,) chosen last-layer node per task.
        head_weights: (T, K_last) one-hot with straight-through gradients.
        used: ``used[l]``: sorted node indices of layer l that some task reaches.
    """

    parents: tuple[tuple[int, ...], ...]
    node_weights: tuple[torch.Tensor | None, ...]
    head_choice: tuple[int, ...]
    head_weights: torch.Tensor
    used: tuple[tuple[int, ...], ...]


class Routing(nn.Module):
    """Routing logits of a supernet.

    Args:
        tasks: task names, in the space's order.
        branches: K_l per layer (already effective, see ``effective_branches``).
        can_branch: whether layer l may split (has learnable parent logits).
    """

    def __init__(self, tasks: Sequence[str], branches: Sequence[int], can_branch: Sequence[bool]) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.branches = tuple(branches)
        self.can_branch = tuple(can_branch)
        self.node_logits = nn.ParameterList(
            [nn.Parameter(torch.zeros(self.branches[i], self.branches[i - 1])) for i in self._routed_layers]
        )
        self.head_logits = nn.Parameter(torch.zeros(len(self.tasks), self.branches[-1]))

    @property
    def _routed_layers(self) -> list[int]:
        return [i for i in range(1, len(self.branches)) if self.can_branch[i]]

    @property
    def num_layers(self) -> int:
        return len(self.branches)

    def layer_logits(self, layer: int) -> torch.Tensor | None:
        """Parent logits (K_l, K_{l-1}) of layer ``layer``, None where routes are fixed."""
        routed = self._routed_layers
        return self.node_logits[routed.index(layer)] if layer in routed else None

    # -- probabilities -------------------------------------------------------------------------

    def parent_probs(self) -> list[torch.Tensor]:
        """``q[l]`` (K_l, K_{l-1}): parent probabilities per node; identity for fixed layers."""
        probs = [torch.ones(self.branches[0], 1, device=self.head_logits.device)]
        for layer in range(1, self.num_layers):
            logits = self.layer_logits(layer)
            probs.append(
                torch.eye(self.branches[layer], device=self.head_logits.device)
                if logits is None
                else logits.softmax(-1)
            )
        return probs

    def head_probs(self) -> torch.Tensor:
        """(T, K_last) last-layer node probabilities per task."""
        return self.head_logits.softmax(-1)

    def usage_probs(self) -> list[torch.Tensor]:
        """``P(node used)`` per layer, (K_l,) each, propagated from the heads down."""
        q = self.parent_probs()
        used = 1 - torch.prod(1 - self.head_probs(), dim=0)  # (K_last,)
        out = [used]
        for layer in range(self.num_layers - 1, 0, -1):
            used = 1 - torch.prod(1 - used[:, None] * q[layer], dim=0)  # (K_{l-1},)
            out.append(used)
        return out[::-1]

    def expected_cost(self, block_costs: Sequence[float], head_cost: float = 0.0) -> torch.Tensor:
        """Expected cost of the sampled tree over the all-shared tree's cost (1.0 = all-shared)."""
        usage = self.usage_probs()
        total = sum(u.sum() * c for u, c in zip(usage, block_costs)) + head_cost
        return total / (sum(block_costs) + head_cost)

    # -- sampling ------------------------------------------------------------------------------

    def sample(
        self, tau: float = 1.0, *, hard: bool = True, argmax: bool = False, frozen: bool = False
    ) -> RoutingSample:
        """Draw one routing with Gumbel-softmax (straight-through when ``hard``), or take the argmax.

        ``frozen`` samples from uniform routes instead of the logits (the warm-up's random paths).
        """

        def choose(logits: torch.Tensor) -> torch.Tensor:
            if frozen:
                logits = torch.zeros_like(logits)
            if argmax:
                index = logits.argmax(-1, keepdim=True)
                soft = logits.softmax(-1)
                return torch.zeros_like(soft).scatter_(-1, index, 1.0) - soft.detach() + soft
            return F.gumbel_softmax(logits, tau=tau, hard=hard, dim=-1)

        head_weights = choose(self.head_logits)
        head_choice = tuple(int(i) for i in head_weights.argmax(-1))
        node_weights: list[torch.Tensor | None] = [None]
        parents: list[tuple[int, ...]] = [tuple(0 for _ in range(self.branches[0]))]
        for layer in range(1, self.num_layers):
            logits = self.layer_logits(layer)
            if logits is None:
                node_weights.append(None)
                parents.append(tuple(range(self.branches[layer])))
            else:
                w = choose(logits)
                node_weights.append(w)
                parents.append(tuple(int(i) for i in w.argmax(-1)))
        return RoutingSample(tuple(parents), tuple(node_weights), head_choice, head_weights, _used(parents, head_choice))

    def shared_path(self) -> RoutingSample:
        """Every task through node 0 of every layer: the all-shared tree, with constant weights."""
        device = self.head_logits.device
        parents = tuple(tuple(0 for _ in range(k)) for k in self.branches)
        weights = tuple(
            None if layer == 0 or self.layer_logits(layer) is None else torch.ones(k, self.branches[layer - 1], device=device)
            for layer, k in enumerate(self.branches)
        )
        head_choice = tuple(0 for _ in self.tasks)
        heads = torch.ones(len(self.tasks), self.branches[-1], device=device)
        return RoutingSample(parents, weights, head_choice, heads, _used(parents, head_choice))

    def derive(self) -> DerivedTree:
        """The tree of the most likely routes: argmax from the heads down, unused nodes pruned."""
        s = self.sample(argmax=True)
        return tree_of(self.tasks, s.parents, s.head_choice)


def _used(parents: Sequence[Sequence[int]], head_choice: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    used = [set(head_choice)]
    for layer in range(len(parents) - 1, 0, -1):
        used.append({parents[layer][k] for k in used[-1]})
    return tuple(tuple(sorted(u)) for u in used[::-1])


@dataclass(frozen=True)
class DerivedTree:
    """A tree read off the routes, and the supernet node behind each of its (layer, group) nodes."""

    tree: BranchingTree
    node_of: dict[tuple[int, tuple[str, ...]], int]


def tree_of(tasks: Sequence[str], parents: Sequence[Sequence[int]], head_choice: Sequence[int]) -> DerivedTree:
    """The branching tree that ``parents`` and head choices induce on ``tasks``."""
    num_layers = len(parents)
    node = list(head_choice)  # each task's node at the current layer
    paths = [list(node)]
    for layer in range(num_layers - 1, 0, -1):
        node = [parents[layer][k] for k in node]
        paths.append(list(node))
    paths = paths[::-1]  # paths[l][t]: node of task t at layer l
    partitions, nodes = [], {}
    for layer in range(num_layers):
        groups: dict[int, list[str]] = {}
        for t, k in zip(tasks, paths[layer]):
            groups.setdefault(k, []).append(t)
        partitions.append(tuple(tuple(g) for g in groups.values()))
        nodes.update({(layer, tuple(g)): k for k, g in groups.items()})
    tree = BranchingTree(tuple(tasks), tuple(partitions))
    # Groups are canonicalised by the tree; look each one up by its set of tasks.
    by_set = {(layer, frozenset(g)): k for (layer, g), k in nodes.items()}
    return DerivedTree(tree, {(layer, g): by_set[layer, frozenset(g)] for layer, g in tree.nodes()})
