"""Branching trees: which tasks share which backbone layers.

For a backbone of L layers and tasks T, a tree is a chain of partitions of T, one per layer, each
refining the one before: tasks in one group at layer l share that layer's weights and
activations; once split, they are never rejoined (the architecture family of Learning to Branch,
Guo et al. 2020, and BMTAS, Bruggemann et al. 2020). Trees are frozen, validate themselves, and
are kept in canonical form so equal trees compare and hash equal whatever the group order.

A node of the tree is ``(layer, group)`` with ``group`` a tuple of task names in canonical order.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtnas.core import MtnasError, did_you_mean, is_name, short_repr

__all__ = ["NAMED_TREES", "BranchingTree", "Group", "InvalidTreeError", "Node", "Partition", "parse_tree_spec"]

Group = tuple[str, ...]
Partition = tuple[Group, ...]
Node = tuple[int, Group]


class InvalidTreeError(MtnasError, ValueError):
    """A tree that is not a chain of refining partitions of its tasks, or does not fit a space."""


@dataclass(frozen=True)
class BranchingTree:
    """A chain of task partitions, one per backbone layer (0-based ``partitions[layer]``).

    Lists are accepted and stored as tuples. Canonical form: tasks inside a group follow their
    order in ``tasks``; groups are ordered by their first task. ``tasks`` keeps the given order.

    Args:
        tasks: the task names, in the search space's order.
        partitions: ``partitions[l]`` is the partition of ``tasks`` at layer ``l``.
    """

    tasks: tuple[str, ...]
    partitions: tuple[Partition, ...]

    def __post_init__(self) -> None:
        tasks = _as_names(self.tasks, "tasks")
        if not tasks:
            raise InvalidTreeError("a tree needs at least one task")
        repeated = sorted(t for t, n in Counter(tasks).items() if n > 1)
        if repeated:
            raise InvalidTreeError(f"tasks repeat: {short_repr(repeated)}")
        odd = next((t for t in tasks if not is_name(t)), None)
        if odd is not None:  # it would become a module key, a file key and a label in a picture
            raise InvalidTreeError(f"task {short_repr(odd, 40)} cannot be a task name: use 1-100 letters, digits, "
                                   "'_' or '-' (no '.', '/', spaces or control characters)")
        if isinstance(self.partitions, str) or not isinstance(self.partitions, Sequence):
            raise InvalidTreeError(
                f"partitions must be a list with one partition per layer, got {short_repr(self.partitions)}"
            )
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
        tasks = _as_names(tasks, "tasks")
        return cls(tasks, ((tasks,),) * _check_num_layers(num_layers))

    @classmethod
    def independent(cls, tasks: Sequence[str], num_layers: int) -> BranchingTree:
        """One network per task: singletons at every layer."""
        tasks = _as_names(tasks, "tasks")
        return cls(tasks, (tuple((t,) for t in tasks),) * _check_num_layers(num_layers))

    @classmethod
    def from_split_points(
        cls, tasks: Sequence[str], num_layers: int, splits: Mapping[int, Sequence[Sequence[str]]]
    ) -> BranchingTree:
        """All-shared until the first split point; ``splits[l]`` is the partition from layer l on.

        Each partition stays until the next split point, which must refine it.
        """
        tasks = _as_names(tasks, "tasks")
        num_layers = _check_num_layers(num_layers)
        for layer in splits:
            if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < num_layers:
                raise InvalidTreeError(f"split point at layer {short_repr(layer)} is outside 0..{num_layers - 1}")
        current: Sequence[Sequence[str]] = (tasks,)
        partitions = []
        for layer in range(num_layers):
            current = splits.get(layer, current)
            partitions.append(current)
        return cls(tasks, tuple(partitions))

    # -- derived values --------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return len(self.partitions)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def num_nodes(self) -> int:
        """Number of (layer, group) nodes: one per layer when all-shared, tasks x layers when independent."""
        return sum(len(p) for p in self.partitions)

    @property
    def key(self) -> str:
        """Stable digest: equal trees give equal keys in any process.

        The first 12 hex characters of the SHA-256 of ``json.dumps(self.to_dict(),
        separators=(",", ":"))`` (keys ``tasks`` then ``partitions``, canonical form, ASCII).
        """
        text = json.dumps(self.to_dict(), separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def first_split_layer(self) -> int | None:
        """The first layer with more than one group (None when all-shared)."""
        return next((layer for layer, p in enumerate(self.partitions) if len(p) > 1), None)

    def first_split(self) -> Partition | None:
        """The partition at the first layer with more than one group (None when all-shared)."""
        layer = self.first_split_layer
        return None if layer is None else self.partitions[layer]

    def groups_at(self, layer: int) -> Partition:
        """The partition at ``layer`` (0-based; negative layers are an error, not counted from the end)."""
        return self.partitions[self._check_layer(layer)]

    def group_of(self, task: str, layer: int) -> Group:
        """The group that holds ``task`` at ``layer``."""
        groups = self._group_index[self._check_layer(layer)]
        if task not in groups:
            hint = did_you_mean(task, self.tasks)
            raise MtnasError(f"unknown task {short_repr(task)}{hint}; the tree's tasks are {short_repr(list(self.tasks))}")
        return groups[task]

    @functools.cached_property
    def _group_index(self) -> tuple[dict[str, Group], ...]:
        """Per layer, task -> its group (built once: lookups stay linear on trees of many tasks)."""
        return tuple({t: g for g in p for t in g} for p in self.partitions)

    def nodes(self) -> list[Node]:
        """Every (layer, group), in layer order then canonical group order."""
        return [(layer, g) for layer, p in enumerate(self.partitions) for g in p]

    def parent(self, layer: int, group: Sequence[str]) -> Group | None:
        """The group at ``layer - 1`` that feeds ``group`` at ``layer`` (None at layer 0)."""
        group = self._node_group(layer, group)
        return None if layer == 0 else self.group_of(group[0], layer - 1)

    def children(self, layer: int, group: Sequence[str]) -> Partition:
        """The groups at ``layer + 1`` fed by ``group`` at ``layer`` (empty at the last layer)."""
        group = self._node_group(layer, group)
        if layer + 1 == self.num_layers:
            return ()
        return self._children_index[layer].get(group, ())

    @functools.cached_property
    def _children_index(self) -> tuple[dict[Group, Partition], ...]:
        """Per layer but the last, group -> its groups at the next layer, in canonical order."""
        maps = []
        for layer in range(self.num_layers - 1):
            index, kids = self._group_index[layer], {}
            for g in self.partitions[layer + 1]:
                kids.setdefault(index[g[0]], []).append(g)
            maps.append({g: tuple(k) for g, k in kids.items()})
        return tuple(maps)

    def _check_layer(self, layer: int) -> int:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.num_layers:
            raise IndexError(f"layer {short_repr(layer)} is outside 0..{self.num_layers - 1}")
        return layer

    def _node_group(self, layer: int, group: Sequence[str]) -> Group:
        """``group`` in canonical order, checked to be a node at ``layer``."""
        index = self._group_index[self._check_layer(layer)]
        found = index.get(next(iter(group), None)) if isinstance(group, Sequence) else None
        if found is None or len(found) != len(group) or set(found) != set(group):
            groups = [list(g) for g in self.partitions[layer]]
            raise MtnasError(f"{short_repr(list(group))} is not a group at layer {layer}; the groups are {short_repr(groups)}")
        return found

    # -- conversion ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """``{"tasks": [...], "partitions": [[[...], ...], ...]}`` in canonical form (plain JSON data)."""
        return {"tasks": list(self.tasks), "partitions": [[list(g) for g in p] for p in self.partitions]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BranchingTree:
        """The inverse of :meth:`to_dict`; other keys are ignored (an arch.json holds more)."""
        if not isinstance(data, Mapping) or "tasks" not in data or "partitions" not in data:
            raise InvalidTreeError("a tree needs 'tasks' and 'partitions' keys")
        return cls(data["tasks"], data["partitions"])

    def to_networkx(self) -> Any:
        """A ``networkx.DiGraph`` whose edges run parent -> child.

        The root is ``"input"`` (so trees split at layer 0 are still one tree); the other nodes are
        ``(layer, group)``, and each task has a leaf ``("task", name)`` under its last-layer
        group. Every node has attributes ``kind`` (``"input"``, ``"group"`` or ``"task"``),
        ``layer`` (-1 for the root, ``num_layers`` for leaves) and ``tasks``.
        """
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_node("input", kind="input", layer=-1, tasks=self.tasks)
        for layer, group in self.nodes():
            graph.add_node((layer, group), kind="group", layer=layer, tasks=group)
            parent = self.parent(layer, group)
            graph.add_edge("input" if parent is None else (layer - 1, parent), (layer, group))
        last = self.num_layers - 1
        for task in self.tasks:
            graph.add_node(("task", task), kind="task", layer=self.num_layers, tasks=(task,))
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
        """One line, e.g. ``0-1: all | 2-3: digit,parity / orientation,frequency``.

        Layer ranges with the same partition are merged; ``all`` is one group, ``each`` is one
        group per task; otherwise groups are ``/``-separated and tasks ``,``-separated.
        """
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
        """An indented text tree: one line per group, with the layers it spans and its tasks.

        A group that stays unchanged over several layers is one line (``layers 1-3: a, b``).
        """
        lines: list[str] = []
        # depth first with an explicit stack: a tree that splits off one task per layer is as deep
        # as it has tasks, deeper than Python's recursion allows
        stack = [(0, group, "", "", "") for group in reversed(self.partitions[0])]
        while stack:
            layer, group, lead, branch, rest = stack.pop()
            end = layer
            while end + 1 < self.num_layers and self._group_index[end + 1][group[0]] == group:
                end += 1
            span = f"layer {layer}" if end == layer else f"layers {layer}-{end}"
            lines.append(f"{lead}{branch}{span}: {', '.join(group)}")
            kids = self.children(end, group)
            for i in reversed(range(len(kids))):
                last = i == len(kids) - 1
                stack.append((end + 1, kids[i], lead + rest, "└─ " if last else "├─ ", "   " if last else "│  "))
        return "\n".join(lines)

    def check_against(self, tasks: Sequence[str], num_layers: int) -> None:
        """Raise :class:`InvalidTreeError` unless this tree fits a space with ``tasks`` and ``num_layers``.

        The task sets must be equal (order may differ) and the layer counts too.
        """
        space_tasks = list(tasks)
        known, mine = set(space_tasks), set(self.tasks)
        unknown = [t for t in self.tasks if t not in known]
        missing = [t for t in space_tasks if t not in mine]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown {short_repr(unknown)}{did_you_mean(unknown[0], missing or space_tasks)}")
            if missing:
                parts.append(f"missing {short_repr(missing)}")
            raise InvalidTreeError(
                f"the tree's tasks do not match the space's: {', '.join(parts)}; "
                f"the space's tasks are {short_repr(space_tasks)}"
            )
        if self.num_layers != num_layers:
            raise InvalidTreeError(f"the tree has {self.num_layers} layers, the space's backbone has {num_layers}")


def _as_names(value: Any, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of task names; a bare string is an error, not a sequence of letters."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidTreeError(f"{what} must be a list of task names, got {short_repr(value)}")
    bad = [v for v in value if not isinstance(v, str) or not v][:1]
    if bad:
        raise InvalidTreeError(f"{what}: task names must be non-empty strings, got {short_repr(bad[0])}")
    return tuple(value)


def _check_num_layers(num_layers: int) -> int:
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise InvalidTreeError(f"num_layers must be a positive integer, got {short_repr(num_layers)}")
    return num_layers


def _canonical_partition(partition: Any, order: Mapping[str, int], layer: int) -> Partition:
    """``partition`` checked to be a partition of the tasks of ``order``, in canonical form; linear time."""
    if isinstance(partition, str) or not isinstance(partition, Sequence):
        raise InvalidTreeError(f"layer {layer}: a partition must be a list of groups, got {short_repr(partition)}")
    groups = [_as_names(g, f"layer {layer}: group {i}") for i, g in enumerate(partition)]
    empty = [i for i, g in enumerate(groups) if not g]
    if empty:
        raise InvalidTreeError(f"layer {layer}: empty group (group {empty[0]})")
    counts = Counter(t for g in groups for t in g)
    unknown = sorted(t for t in counts if t not in order)
    if unknown:
        hint = did_you_mean(unknown[0], order)
        raise InvalidTreeError(
            f"layer {layer}: unknown tasks {short_repr(unknown)}{hint}; the tree's tasks are {short_repr(list(order))}"
        )
    duplicated = [t for t in order if counts[t] > 1]
    if duplicated:
        twice = set(duplicated)
        holders = [list(g) for g in groups if twice.intersection(g)]
        raise InvalidTreeError(
            f"layer {layer}: tasks {short_repr(duplicated)} appear more than once (in {short_repr(holders)})"
        )
    missing = [t for t in order if counts[t] == 0]
    if missing:
        raise InvalidTreeError(f"layer {layer}: tasks {short_repr(missing)} are in no group")
    canonical = [tuple(sorted(g, key=order.__getitem__)) for g in groups]
    return tuple(sorted(canonical, key=lambda g: order[g[0]]))


def _check_refines(before: Partition, after: Partition, layer: int) -> None:
    """Every group at ``layer`` must lie inside one group at ``layer - 1``."""
    index = {t: i for i, g in enumerate(before) for t in g}
    for group in after:
        parents = sorted({index[t] for t in group})
        if len(parents) > 1:
            members = set(group)
            split = " | ".join(short_repr([t for t in before[i] if t in members], 40) for i in parents[:3])
            raise InvalidTreeError(
                f"layer {layer}: group {short_repr(list(group))} rejoins tasks that were split at layer {layer - 1} "
                f"({split}{' | ...' if len(parents) > 3 else ''})"
            )


#: Trees the CLI knows by name (``mtnas train --tree``).
NAMED_TREES = {"all-shared": BranchingTree.all_shared, "independent": BranchingTree.independent}
_ALIASES = {"all_shared": "all-shared", "allshared": "all-shared", "shared": "all-shared", "separate": "independent"}


def parse_tree_spec(spec: str, tasks: Sequence[str], num_layers: int) -> BranchingTree:
    """A named tree for the CLI: ``all-shared`` (alias ``all_shared``, ``shared``) or ``independent``."""
    key = spec.strip().lower()
    name = _ALIASES.get(key, key)
    if name not in NAMED_TREES:
        raise MtnasError(
            f"unknown tree {short_repr(spec)}{did_you_mean(key, NAMED_TREES)}; give all-shared, independent or an "
            "arch.json path"
        )
    return NAMED_TREES[name](tasks, num_layers)
