"""Local search over one-split trees, every step decided by trained trees.

A one-split tree shares layers ``0..s-1`` among all tasks and gives each group of a partition its
own branch from layer ``s`` to the heads (``Split``; all-shared is the split with one group).
Its neighbours (``neighbours``) are the trees one edit away: one task moved to another group (or
to a group of its own), two groups merged, one group split in two, the split one layer shallower
or deeper. ``climb`` moves to the best-scoring trained neighbour until none scores higher: local
search is a strong baseline of neural architecture search (White, Nolen and Savani, "Exploring the
Loss Landscape in Neural Architecture Search", UAI 2021), and here each comparison is two trained
trees, not a prediction.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mtnas.search._evidence import Evaluated
from mtnas.tree import BranchingTree

__all__ = ["Split", "climb", "neighbours", "split_of"]

Groups = tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Split:
    """A one-split tree: all tasks share the layers below ``layer``, each group has its own branch
    from ``layer`` on. ``layer`` is None for the all-shared tree (one group)."""

    layer: int | None
    groups: Groups

    def tree(self, tasks: Sequence[str], num_layers: int) -> BranchingTree:
        if self.layer is None or len(self.groups) == 1:
            return BranchingTree.all_shared(tasks, num_layers)
        return BranchingTree.from_split_points(tasks, num_layers, {self.layer: self.groups})


def split_of(tree: BranchingTree) -> Split:
    """The one-split tree of ``tree``'s first split (deeper splits are not kept)."""
    layer = tree.first_split_layer
    return Split(None, (tree.tasks,)) if layer is None else Split(layer, tree.partitions[layer])


def _canon(groups: Sequence[Sequence[str]]) -> Groups:
    return tuple(tuple(g) for g in groups if g)


def neighbours(split: Split, *, branchable: Sequence[int], max_groups: Sequence[int],
               halves: Callable[[tuple[str, ...]], tuple[tuple[str, ...], tuple[str, ...]] | None] | None = None,
               ) -> dict[str, list[Split]]:
    """The one-edit neighbours of ``split``, by kind: ``move``, ``merge``, ``split``, ``shift``.

    Args:
        branchable: the layers at which a tree may split.
        max_groups: the most groups each layer may hold (``routing.max_branches``).
        halves: how to split a group in two (None: no ``split`` neighbours); from all-shared, the
            split into two groups is placed at every branchable layer.
    """
    groups = [list(g) for g in split.groups]
    out: dict[str, list[Split]] = {"move": [], "merge": [], "split": [], "shift": []}
    if split.layer is None:  # all-shared: the first split, at every layer it may happen
        two = halves(tuple(groups[0])) if halves is not None else None
        if two is not None:
            out["split"] = [Split(s, _canon(two)) for s in branchable if max_groups[s] >= 2]
        return out
    s, limit = split.layer, max_groups[split.layer]
    for gi, group in enumerate(groups):
        for task in group:
            targets = [hi for hi in range(len(groups)) if hi != gi]
            if len(groups) < limit and len(group) > 1:
                targets.append(len(groups))  # a group of its own
            for hi in targets:
                new = [list(g) for g in groups] + [[]]
                new[gi].remove(task)
                new[hi].append(task)
                out["move"].append(Split(s, _canon(new)))
    for a, b in itertools.combinations(range(len(groups)), 2):
        rest = [g for i, g in enumerate(groups) if i not in (a, b)]
        merged = _canon(rest + [groups[a] + groups[b]])
        out["merge"].append(Split(s if len(merged) > 1 else None, merged))
    if halves is not None and len(groups) < limit:
        for gi, group in enumerate(groups):
            two = halves(tuple(group)) if len(group) > 1 else None
            if two is not None:
                out["split"].append(Split(s, _canon([g for i, g in enumerate(groups) if i != gi] + list(two))))
    for t in (s - 1, s + 1):
        if t in branchable and len(groups) <= max_groups[t]:
            out["shift"].append(Split(t, _canon(groups)))
    return out


def climb(start: Evaluated, evaluate: Callable[[Sequence[BranchingTree]], list[Evaluated]],
          candidates: Callable[[Evaluated], list[BranchingTree]], score: Callable[[Evaluated], float], *,
          min_gain: float = 0.0, max_rounds: int = 20) -> tuple[Evaluated, list[Evaluated]]:
    """Best-improvement hill climbing from ``start``: train the ``candidates`` of the current tree,
    move to the best when it scores more than ``min_gain`` higher, stop when none does.

    Returns the final tree and the path (every tree moved to, ``start`` first).
    """
    current, path = start, [start]
    for _ in range(max_rounds):
        trees = [t for t in candidates(current) if t != current.tree]
        if not trees:
            break
        best = max(evaluate(trees), key=score)
        if score(best) <= score(current) + min_gain:
            break
        current = best
        path.append(best)
    return current, path
