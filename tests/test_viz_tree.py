"""Sharing-tree pictures: the layout as data, and a drawn 40-task tree without colliding labels."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from mtnas.tree import BranchingTree
from mtnas.viz import draw_tree, layout_tree, render_tree, tree_title
from mtnas.viz._tree_layout import SHARED_COLOUR, task_order

TASKS = ("digit", "parity", "ge5", "orientation", "frequency", "diagonal")


def _planted() -> BranchingTree:
    digits, gratings = TASKS[:3], TASKS[3:]
    return BranchingTree(TASKS, (
        (TASKS,), (digits, gratings), (("digit", "parity"), ("ge5",), gratings),
        (("digit", "parity"), ("ge5",), ("orientation", "frequency"), ("diagonal",)),
    ))


def _random_tree(num_tasks: int, num_layers: int, seed: int) -> BranchingTree:
    rng = random.Random(seed)
    tasks = tuple(f"attribute_{i:02d}" for i in range(num_tasks))
    groups, partitions = [tasks], []
    for _ in range(num_layers):
        new = []
        for g in groups:
            if len(g) > 1 and rng.random() < 0.6:
                members = list(g)
                rng.shuffle(members)
                cut = rng.randint(1, len(g) - 1)
                new += [tuple(sorted(members[:cut])), tuple(sorted(members[cut:]))]
            else:
                new.append(g)
        groups = new
        partitions.append(tuple(groups))
    return BranchingTree(tasks, tuple(partitions))


@pytest.mark.parametrize("tree", [_planted(), _random_tree(40, 6, 0), _random_tree(13, 4, 3)], ids=["6", "40", "13"])
def test_every_node_spans_exactly_its_tasks_rows_and_boxes_in_a_column_do_not_overlap(tree: BranchingTree) -> None:
    layout = layout_tree(tree)
    order = task_order(tree)
    assert sorted(order) == sorted(tree.tasks)
    for node in layout.nodes[1:]:
        rows = sorted(order.index(t) for t in node.tasks)
        assert rows == list(range(rows[0], rows[0] + len(rows)))  # contiguous
        assert node.y_top < rows[0] < node.y_bottom and node.y_top < rows[-1] < node.y_bottom
        assert node.x == node.layer + 1
    for layer in range(tree.num_layers):
        column = sorted((n for n in layout.nodes if n.layer == layer), key=lambda n: n.y_top)
        assert {n.tasks for n in column} == set(tree.groups_at(layer))
        assert all(a.y_bottom < b.y_top for a, b in zip(column, column[1:]))
    # one edge into each node, one into each head; branch points are the nodes with 2+ children
    assert len(layout.edges) == len(layout.nodes) - 1 + tree.num_tasks
    for node in layout.nodes[1:]:
        if node.layer < tree.num_layers - 1:
            assert node.branches == (len(tree.children(node.layer, node.tasks)) > 1)
    assert [leaf[0] for leaf in layout.leaves] == list(order)


def test_one_colour_per_final_group_and_shared_nodes_are_neutral() -> None:
    tree = _planted()
    layout = layout_tree(tree)
    colour = {task: c for task, _, _, c in layout.leaves}
    finals = tree.groups_at(tree.num_layers - 1)
    assert len({colour[g[0]] for g in finals}) == len(finals)
    assert all(len({colour[t] for t in g}) == 1 for g in finals)
    for node in layout.nodes[1:]:
        owners = {g for g in finals if set(g) & set(node.tasks)}
        expected = colour[node.tasks[0]] if len(owners) == 1 else SHARED_COLOUR
        assert node.colour == expected


def test_names_in_boxes_for_few_tasks_and_counts_for_many() -> None:
    few = layout_tree(_planted())
    assert few.names_in_boxes and few.nodes[1].label.split("\n") == list(task_order(_planted()))
    many = layout_tree(_random_tree(40, 6, 0))
    assert not many.names_in_boxes
    assert many.nodes[1].label == "all 40"
    assert all(n.label in (f"{len(n.tasks)} tasks", n.tasks[0], "all 40", "input") for n in many.nodes)


def _text_boxes(fig) -> list:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts] + list(fig.texts)
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_text()]


@pytest.mark.parametrize("num_tasks", [2, 6, 40])
def test_no_two_labels_overlap_from_2_to_40_tasks(num_tasks: int) -> None:
    tree = _planted() if num_tasks == 6 else _random_tree(num_tasks, 6, 1)
    fig = render_tree(layout_tree(tree), title=tree_title("t", params=1000, flops=2_000_000, delta_m=-1.5))
    boxes = _text_boxes(fig)
    assert sum(1 for text, _ in boxes if text in tree.tasks) >= num_tasks  # every task is labelled
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), f"labels {a!r} and {b!r} overlap"
    width, height = fig.canvas.get_width_height()
    for text, box in boxes:  # and every label is inside the picture
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, text


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_draw_tree_writes_the_format_of_the_suffix(tmp_path: Path, suffix: str, magic: bytes) -> None:
    path = draw_tree(_planted(), tmp_path / f"tree{suffix}", title="planted")
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [f"tree{suffix}"]  # no temporary file left behind


def test_title_states_cost_and_delta_m() -> None:
    assert tree_title("trial 7", params=21958, flops=1_400_000, delta_m=-0.97) == (
        "trial 7 — 21,958 params · 1.40 MFLOPs · delta-m -0.97%"
    )
    assert tree_title(params=5) == "5 params"
