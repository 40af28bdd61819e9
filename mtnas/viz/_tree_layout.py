"""Where each part of a sharing-tree picture goes, computed as data (no matplotlib here).

Layers run left to right: the input, one column per backbone layer, then the task heads. Every
task owns one row; tasks are ordered depth-first through the tree, so the tasks of any node are
contiguous rows and a node's box spans exactly its tasks' rows. Names therefore never need more
room than the rows they describe, from 2 to 40 tasks and beyond.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtnas.tree import BranchingTree, Group

__all__ = ["LayoutEdge", "LayoutNode", "TreeLayout", "layout_tree", "task_order"]

#: Above this many tasks a node shows how many tasks share it, not their names (the leaves carry
#: the names, and the colour of each final group links a node to its leaves).
NAMED_TASKS_MAX = 8

#: A colour-blind-friendly cycle (Okabe-Ito, then Tableau), one colour per final task group.
GROUP_COLOURS = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#4E79A7", "#F28E2B", "#59A14F", "#B07AA1", "#76B7B2", "#EDC948", "#FF9DA7", "#9C755F",
)
SHARED_COLOUR = "#DDDDDD"


@dataclass(frozen=True)
class LayoutNode:
    """One box: the block of ``layer`` shared by ``tasks``; ``layer`` -1 is the input.

    ``x`` is the column, ``y_top``/``y_bottom`` the rows it spans (row 0 at the top), ``label``
    the text inside, ``colour`` its final group's colour or the neutral shared colour.
    """

    layer: int
    tasks: Group
    x: float
    y_top: float
    y_bottom: float
    label: str
    colour: str
    branches: bool  # more than one child: a branch point

    @property
    def y(self) -> float:
        return (self.y_top + self.y_bottom) / 2


@dataclass(frozen=True)
class LayoutEdge:
    """A line from the right side of one node (or the input) to the left side of the next."""

    x0: float
    y0: float
    x1: float
    y1: float
    colour: str


@dataclass(frozen=True)
class TreeLayout:
    """Everything a drawing needs, in data coordinates (one unit per column and per task row)."""

    nodes: tuple[LayoutNode, ...]
    edges: tuple[LayoutEdge, ...]
    leaves: tuple[tuple[str, float, float, str], ...]  # (task, x, y, colour)
    columns: tuple[tuple[float, str], ...]  # (x, heading) per column
    num_rows: int
    box_width: float
    names_in_boxes: bool

    @property
    def width(self) -> float:
        return max(x for _, x, _, _ in self.leaves) + 1

    @property
    def longest_box_line(self) -> int:
        """Characters of the longest line inside a box (the drawing sizes its columns by it)."""
        return max(len(line) for n in self.nodes for line in n.label.split("\n"))

    @property
    def longest_leaf(self) -> int:
        return max(len(task) for task, *_ in self.leaves)


def task_order(tree: BranchingTree) -> tuple[str, ...]:
    """Tasks depth-first through the tree: every node's tasks are contiguous."""
    order: list[str] = []

    def visit(layer: int, group: Group) -> None:
        if layer == tree.num_layers - 1:
            order.extend(group)
            return
        for child in tree.children(layer, group):
            visit(layer + 1, child)

    for group in tree.groups_at(0):
        visit(0, group)
    return tuple(order)


def layout_tree(tree: BranchingTree, *, named_tasks_max: int = NAMED_TASKS_MAX) -> TreeLayout:
    """The positions, labels and colours of ``tree``'s picture."""
    order = task_order(tree)
    row = {task: i for i, task in enumerate(order)}
    last = tree.groups_at(tree.num_layers - 1)
    colour_of_group = {g: GROUP_COLOURS[i % len(GROUP_COLOURS)] for i, g in enumerate(sorted(last, key=lambda g: row[g[0]]))}
    final_colour = {t: colour_of_group[g] for g in last for t in g}
    names = tree.num_tasks <= named_tasks_max
    box_width = 0.62
    pad = 0.38  # a box reaches this far above its first row and below its last

    def label(group: Group) -> str:
        if names or len(group) == 1:
            return "\n".join(group)
        return f"{len(group)} tasks" if len(group) < tree.num_tasks else f"all {len(group)}"

    def colour(group: Group) -> str:
        colours = {final_colour[t] for t in group}
        return colours.pop() if len(colours) == 1 else SHARED_COLOUR

    def rows(group: Group) -> tuple[float, float]:
        ys = [row[t] for t in group]
        return min(ys) - pad, max(ys) + pad

    centre = (len(order) - 1) / 2
    input_node = LayoutNode(-1, order, 0.0, centre - pad, centre + pad, "input", "#FFFFFF", len(tree.groups_at(0)) > 1)
    nodes = [input_node]
    for layer in range(tree.num_layers):
        for group in sorted(tree.groups_at(layer), key=lambda g: row[g[0]]):
            splits = layer + 1 < tree.num_layers and len(tree.children(layer, group)) > 1
            nodes.append(LayoutNode(layer, group, float(layer + 1), *rows(group), label(group), colour(group), splits))
    half = box_width / 2
    edges = []
    for node in nodes[1:]:
        parent = input_node if node.layer == 0 else _parent_node(nodes, node)
        edges.append(LayoutEdge(parent.x + half, parent.y, node.x - half, node.y, node.colour))
    head_x = float(tree.num_layers + 1)
    leaves = tuple((t, head_x, float(row[t]), final_colour[t]) for t in order)
    for node in nodes[1:]:
        if node.layer == tree.num_layers - 1:
            edges += [LayoutEdge(node.x + half, node.y, head_x - half, float(row[t]), final_colour[t]) for t in node.tasks]
    columns = ((0.0, "input"),) + tuple((float(i + 1), f"layer {i}") for i in range(tree.num_layers)) + ((head_x, "heads"),)
    return TreeLayout(
        nodes=tuple(nodes), edges=tuple(edges), leaves=leaves, columns=columns,
        num_rows=len(order), box_width=box_width, names_in_boxes=names,
    )


def _parent_node(nodes: list[LayoutNode], child: LayoutNode) -> LayoutNode:
    return next(n for n in nodes if n.layer == child.layer - 1 and set(child.tasks) <= set(n.tasks))
