"""Branching trees: validation, canonical form, hashing, conversions."""

from __future__ import annotations

import hashlib
import json
import random

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtnas.errors import MtnasError
from mtnas.tree import BranchingTree, InvalidTreeError, parse_tree_spec

TASKS = ("a", "b", "c", "d")


def test_group_order_does_not_matter() -> None:
    t1 = BranchingTree(TASKS, ((("a", "b", "c", "d"),), (("a", "b"), ("c", "d"))))
    t2 = BranchingTree(TASKS, ((("d", "c", "b", "a"),), (("d", "c"), ("b", "a"))))
    assert t1 == t2 and hash(t1) == hash(t2) and t1.key == t2.key
    assert t2.partitions[1] == (("a", "b"), ("c", "d"))


def test_key_is_the_digest_of_the_canonical_json() -> None:
    tree = BranchingTree.from_split_points(TASKS, 3, {1: [("c", "a"), ("b", "d")]})
    canonical = json.dumps(
        {"tasks": list(TASKS), "partitions": [[list(TASKS)], [["a", "c"], ["b", "d"]], [["a", "c"], ["b", "d"]]]},
        separators=(",", ":"),
    )
    assert tree.key == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert tree.key != BranchingTree.all_shared(TASKS, 3).key


def test_constructors() -> None:
    shared = BranchingTree.all_shared(TASKS, 3)
    indep = BranchingTree.independent(TASKS, 3)
    assert shared.num_nodes == 3 and shared.first_split_layer is None
    assert indep.num_nodes == 12 and indep.first_split_layer == 0
    split = BranchingTree.from_split_points(TASKS, 4, {2: [("a", "b"), ("c", "d")], 3: [("a",), ("b",), ("c", "d")]})
    assert split.partitions[:2] == ((TASKS,),) * 2
    assert split.first_split_layer == 2 and split.first_split() == (("a", "b"), ("c", "d"))
    assert split.num_nodes == 1 + 1 + 2 + 3
    assert split.parent(3, ("b",)) == ("a", "b")
    assert split.describe() == "0-1: all | 2: a,b / c,d | 3: a / b / c,d"


@pytest.mark.parametrize(
    ("partitions", "message"),
    [
        (((("a", "b"), ("c", "d")), (("a", "b", "c", "d"),)), r"layer 1: group \['a', 'b', 'c', 'd'\] rejoins tasks that were split at layer 0 \(\['a', 'b'\] \| \['c', 'd'\]\)"),
        (((("a", "b", "c"),),), r"layer 0: tasks \['d'\] are in no group"),
        (((("a", "b"), ("b", "c", "d")),), r"layer 0: tasks \['b'\] appear in more than one group"),
        (((("a", "b", "c", "d"), ()),), r"layer 0: empty group"),
        (((("a", "b", "c", "d", "e"),),), r"layer 0: unknown tasks \['e'\]"),
    ],
)
def test_invalid_trees_name_layer_and_tasks(partitions: tuple, message: str) -> None:
    with pytest.raises(InvalidTreeError, match=message):
        BranchingTree(TASKS, partitions)


def test_check_against_space() -> None:
    tree = BranchingTree.all_shared(("digit", "parity"), 4)
    with pytest.raises(InvalidTreeError, match=r"unknown \['digit'\] \(did you mean 'digits'\?\), missing \['digits'\]"):
        tree.check_against(("digits", "parity"), 4)
    with pytest.raises(InvalidTreeError, match="the tree has 4 layers, the space's backbone has 3"):
        tree.check_against(("digit", "parity"), 3)


def test_networkx_graph_is_a_tree_with_task_leaves() -> None:
    tree = BranchingTree.from_split_points(TASKS, 3, {1: [("a", "b"), ("c", "d")], 2: [("a",), ("b",), ("c", "d")]})
    graph = tree.to_networkx()
    assert nx.is_arborescence(graph)
    assert graph.number_of_nodes() == 1 + tree.num_nodes + len(TASKS)  # input root, nodes, leaves
    leaves = [n for n in graph if graph.out_degree(n) == 0]
    assert sorted(leaves) == [("task", t) for t in TASKS]
    assert graph.has_edge((1, ("c", "d")), (2, ("c", "d")))


def test_render_text_shows_each_node_once() -> None:
    tree = BranchingTree.from_split_points(TASKS, 3, {1: [("a", "b"), ("c", "d")]})
    lines = tree.render_text().splitlines()
    assert lines[0] == "layer 0: a, b, c, d"
    assert any("layers 1-2: a, b" in line for line in lines) and any("layers 1-2: c, d" in line for line in lines)
    assert len(lines) == 3


def test_named_trees_and_typos() -> None:
    assert parse_tree_spec("all_shared", TASKS, 2) == BranchingTree.all_shared(TASKS, 2)
    assert parse_tree_spec("independent", TASKS, 2).num_nodes == 8
    with pytest.raises(MtnasError, match=r"unknown tree 'independant' \(did you mean 'independent'\?\)"):
        parse_tree_spec("independant", TASKS, 2)


@st.composite
def refining_chains(draw: st.DrawFn) -> BranchingTree:
    tasks = tuple(f"t{i}" for i in range(draw(st.integers(1, 7))))
    groups = [list(tasks)]
    partitions = []
    for _ in range(draw(st.integers(1, 5))):
        new = []
        for g in groups:
            labels = draw(st.lists(st.integers(0, 2), min_size=len(g), max_size=len(g)))
            for label in sorted(set(labels)):
                new.append([t for t, lab in zip(g, labels) if lab == label])
        groups = new
        partitions.append([list(g) for g in groups])
    return BranchingTree(tasks, tuple(tuple(tuple(g) for g in p) for p in partitions))


@settings(max_examples=60, deadline=None)
@given(refining_chains(), st.randoms())
def test_round_trip_and_canonical_form(tree: BranchingTree, rnd: random.Random) -> None:
    assert BranchingTree.from_dict(json.loads(json.dumps(tree.to_dict()))) == tree
    shuffled = tuple(tuple(rnd.sample(list(p), len(p))) for p in tree.partitions)
    again = BranchingTree(tree.tasks, shuffled)
    assert again == tree and again.key == tree.key
    assert BranchingTree(tree.tasks, tree.partitions).partitions == tree.partitions
    assert nx.is_arborescence(tree.to_networkx())
