"""Branching trees: which tasks share which backbone layers.

For a backbone of L layers and tasks T, a tree is a chain of partitions of T, one per layer, each
refining the one before: tasks in one group at layer l share that layer's weights and
activations; once split, they are never rejoined (the architecture family of Learning to Branch,
Guo et al. 2020, and BMTAS, Bruggemann et al. 2020). Trees are frozen, validate themselves, and
are kept in canonical form so equal trees compare and hash equal whatever the group order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtnas.errors import MtnasError, did_you_mean

__all__ = ["BranchingTree", "InvalidTreeError", "parse_tree_spec"]

Group = tuple[str, ...]
Partition = tuple[Group, ...]


class InvalidTreeError(MtnasError, ValueError):
    """A tree that is not a chain of refining partitions of its tasks."""


@dataclass(frozen=True)
class BranchingTree:
    """A chain of task partitions, one per backbone layer (0-based ``partitions[layer]``)."""

    tasks: tuple[str, ...]
    partitions: tuple[Partition, ...]

    def __post_init__(self) -> None:
        tasks = tuple(str(t) for t in self.tasks)
        if not tasks:
            raise InvalidTreeError("a tree needs at least one task")
        repeated = sorted({t for t in tasks if tasks.count(t) > 1})
        if repeated:
            raise InvalidTreeError(f"tasks repeat: {repeated}")
        if not self.partitions:
            raise InvalidTreeError("a tree needs at least one layer")
        order = {t: i for i, t in enumerate(tasks)}
        canonical = tuple(_canonical_partition(p, order, layer) for layer, p in enumerate(self.partitions))
        for layer in range(1, len(canonical)):
            _check_refines(canonical[layer - 1], canonical[layer], layer)
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "partitions", canonical)

    # -- constructors ----------------------------------------------------------------------------

    @classmethod
    def all_shared(cls, tasks: Sequence[str], num_layers: int) -> BranchingTree:
        """Every layer shared by all tasks."""
        return cls(tuple(tasks), ((tuple(tasks),),) * num_layers)

    @classmethod
    def independent(cls, tasks: Sequence[str], num_layers: int) -> BranchingTree:
        """One network per task: singletons at every layer."""
        return cls(tuple(tasks), (tuple((t,) for t in tasks),) * num_layers)

    @classmethod
    def from_split_points(
        cls, tasks: Sequence[str], num_layers: int, splits: Mapping[int, Sequence[Sequence[str]]]
    ) -> BranchingTree:
        """All-shared until the first split point; ``splits[l]`` is the partition from layer l on."""
        for layer in splits:
            if not 0 <= layer < num_layers:
                raise InvalidTreeError(f"split point at layer {layer} is outside 0..{num_layers - 1}")
        current: Sequence[Sequence[str]] = (tuple(tasks),)
        partitions = []
        for layer in range(num_layers):
            current = splits.get(layer, current)
            partitions.append(tuple(tuple(g) for g in current))
        return cls(tuple(tasks), tuple(partitions))

    # -- derived values --------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return len(self.partitions)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def num_nodes(self) -> int:
        return sum(len(p) for p in self.partitions)

    @property
    def key(self) -> str:
        """Stable digest of the canonical form: equal trees give equal keys in any process."""
        text = json.dumps(self.to_dict(), separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def first_split_layer(self) -> int | None:
        """The first layer with more than one group (None when all-shared)."""
        return next((layer for layer, p in enumerate(self.partitions) if len(p) > 1), None)

    def first_split(self) -> Partition | None:
        """The partition at the first split layer."""
        layer = self.first_split_layer
        return None if layer is None else self.partitions[layer]

    def groups_at(self, layer: int) -> Partition:
        return self.partitions[layer]

    def group_of(self, task: str, layer: int) -> Group:
        return next(g for g in self.partitions[layer] if task in g)

    def nodes(self) -> list[tuple[int, Group]]:
        """Every (layer, group), in layer order."""
        return [(layer, g) for layer, p in enumerate(self.partitions) for g in p]

    def parent(self, layer: int, group: Group) -> Group | None:
        """The group at ``layer - 1`` that feeds ``group`` (None at layer 0)."""
        return None if layer == 0 else self.group_of(group[0], layer - 1)

    # -- conversion ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "partitions": [[list(g) for g in p] for p in self.partitions]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BranchingTree:
        try:
            return cls(tuple(data["tasks"]), tuple(tuple(tuple(g) for g in p) for p in data["partitions"]))
        except (KeyError, TypeError) as exc:
            raise InvalidTreeError(f"a tree needs 'tasks' and 'partitions' (lists): {exc}") from None

    def to_networkx(self) -> Any:
        """A ``networkx.DiGraph`` rooted at ``"input"``: nodes ``(layer, group)``, leaves ``("task", name)``."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_node("input", layer=-1, tasks=self.tasks)
        for layer, group in self.nodes():
            graph.add_node((layer, group), layer=layer, tasks=group)
            parent = self.parent(layer, group)
            graph.add_edge("input" if parent is None else (layer - 1, parent), (layer, group))
        last = self.num_layers - 1
        for task in self.tasks:
            graph.add_node(("task", task), layer=self.num_layers, tasks=(task,))
            graph.add_edge((last, self.group_of(task, last)), ("task", task))
        return graph

    def _spans(self) -> list[tuple[int, int, Partition]]:
        """Runs of layers with the same partition: (first, last, partition)."""
        spans: list[tuple[int, int, Partition]] = []
        for layer, p in enumerate(self.partitions):
            if spans and spans[-1][2] == p:
                spans[-1] = (spans[-1][0], layer, p)
            else:
                spans.append((layer, layer, p))
        return spans

    def describe(self) -> str:
        """One line: ``0: all | 1-3: digit,parity / orientation,frequency``."""
        parts = []
        for first, last, p in self._spans():
            layers = f"{first}" if first == last else f"{first}-{last}"
            if len(p) == 1:
                text = "all"
            elif len(p) == self.num_tasks:
                text = "each"
            else:
                text = " / ".join(",".join(g) for g in p)
            parts.append(f"{layers}: {text}")
        return " | ".join(parts)

    def render_text(self) -> str:
        """An indented text tree: one line per node, its layers and tasks."""
        lines: list[str] = []

        def visit(layer: int, group: Group, depth: int) -> None:
            end = layer
            while end + 1 < self.num_layers and group in self.partitions[end + 1]:
                end += 1
            span = f"layer {layer}" if end == layer else f"layers {layer}-{end}"
            lines.append(f"{'  ' * depth}{'└─ ' if depth else ''}{span}: {', '.join(group)}")
            if end + 1 < self.num_layers:
                for child in self.partitions[end + 1]:
                    if set(child) <= set(group):
                        visit(end + 1, child, depth + 1)

        for group in self.partitions[0]:
            visit(0, group, 0)
        return "\n".join(lines)

    def check_against(self, tasks: Sequence[str], num_layers: int) -> None:
        """Raise when this tree does not fit a space with ``tasks`` and ``num_layers`` layers."""
        unknown = [t for t in self.tasks if t not in tasks]
        missing = [t for t in tasks if t not in self.tasks]
        if unknown or missing:
            hint = did_you_mean(unknown[0], missing) if unknown and missing else ""
            raise InvalidTreeError(
                f"the tree's tasks do not match the space's: unknown {unknown}{hint}, missing {missing}"
            )
        if self.num_layers != num_layers:
            raise InvalidTreeError(f"the tree has {self.num_layers} layers, the space's backbone has {num_layers}")


def _canonical_partition(partition: Sequence[Sequence[str]], order: Mapping[str, int], layer: int) -> Partition:
    groups = [tuple(str(t) for t in g) for g in partition]
    if any(not g for g in groups):
        raise InvalidTreeError(f"layer {layer}: empty group")
    seen = [t for g in groups for t in g]
    unknown = sorted({t for t in seen if t not in order})
    if unknown:
        raise InvalidTreeError(f"layer {layer}: unknown tasks {unknown}{did_you_mean(unknown[0], order)}")
    duplicated = sorted({t for t in seen if seen.count(t) > 1}, key=order.__getitem__)
    if duplicated:
        raise InvalidTreeError(f"layer {layer}: tasks {duplicated} appear in more than one group")
    missing = [t for t in order if t not in seen]
    if missing:
        raise InvalidTreeError(f"layer {layer}: tasks {missing} are in no group")
    groups = [tuple(sorted(g, key=order.__getitem__)) for g in groups]
    return tuple(sorted(groups, key=lambda g: order[g[0]]))


def _check_refines(before: Partition, after: Partition, layer: int) -> None:
    for group in after:
        parents = [p for p in before if set(p) & set(group)]
        if len(parents) > 1:
            split = " | ".join(str([t for t in p if t in group]) for p in parents)
            raise InvalidTreeError(
                f"layer {layer}: group {list(group)} rejoins tasks that were split at layer {layer - 1} ({split})"
            )


_NAMED = {"all-shared": BranchingTree.all_shared, "independent": BranchingTree.independent}
_ALIASES = {"all_shared": "all-shared", "shared": "all-shared", "separate": "independent"}


def parse_tree_spec(spec: str, tasks: Sequence[str], num_layers: int) -> BranchingTree:
    """A named tree: ``all-shared`` or ``independent``."""
    name = _ALIASES.get(spec, spec)
    if name not in _NAMED:
        raise MtnasError(
            f"unknown tree {spec!r}{did_you_mean(spec, _NAMED)}; give all-shared, independent or an arch.json path"
        )
    return _NAMED[name](tuple(tasks), num_layers)
