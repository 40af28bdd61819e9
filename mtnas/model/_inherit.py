"""Weights of a finer tree inherited from a coarser tree's trained network.

A tree refines another when each of its groups at every layer lies inside one of the other's
groups at that layer (every tree refines the all-shared tree). The finer tree's node (l, g) then
starts from the coarser node (l, g') with g inside g', and each head from the head of its task:
the branches begin as copies of the block they split from, as in Learning to Branch (Guo et al.
2020), and training them from there is a warm start, not a fresh training.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mtnas.tree import BranchingTree, InvalidTreeError

__all__ = ["inherit_state", "refines"]


def _sources(coarse: BranchingTree, fine: BranchingTree) -> list[list[int]] | None:
    """``out[l][j]``: the index of the group of ``coarse`` at layer l holding group j of ``fine``; None
    when ``fine`` does not refine ``coarse``."""
    if coarse.tasks != fine.tasks and set(fine.tasks) - set(coarse.tasks):
        return None
    out = []
    for layer in range(fine.num_layers):
        where = {t: i for i, g in enumerate(coarse.groups_at(layer)) for t in g}
        row = []
        for group in fine.groups_at(layer):
            homes = {where.get(t) for t in group}
            if len(homes) != 1 or None in homes:
                return None
            row.append(homes.pop())
        out.append(row)
    return out


def refines(fine: BranchingTree, coarse: BranchingTree) -> bool:
    """Whether every group of ``fine`` lies inside a group of ``coarse`` at the same layer."""
    return fine.num_layers == coarse.num_layers and _sources(coarse, fine) is not None


def inherit_state(coarse: BranchingTree, state: Mapping[str, torch.Tensor], fine: BranchingTree
                  ) -> dict[str, torch.Tensor]:
    """A ``BranchedNet`` state dict of ``fine`` whose every node and head is a copy of its source in
    ``coarse``'s trained ``state`` (``layers.{l}.{j}.*``, ``heads.{task}.*``)."""
    sources = _sources(coarse, fine) if fine.num_layers == coarse.num_layers else None
    if sources is None:
        raise InvalidTreeError(f"{fine.describe()} does not refine {coarse.describe()}: its weights cannot be inherited")
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        parts = name.split(".")
        if parts[0] == "heads":
            if parts[1] in fine.tasks:
                out[name] = value.clone()
            continue
        layer, j, rest = int(parts[1]), int(parts[2]), ".".join(parts[3:])
        for k, src in enumerate(sources[layer]):
            if src == j:
                out[f"layers.{layer}.{k}.{rest}"] = value.clone()
    return out
