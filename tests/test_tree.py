"""Branching trees: validation, canonical form, hashing, conversions."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtnas.core import MtnasError
from mtnas.tree import BranchingTree, InvalidTreeError, parse_tree_spec

TASKS = ("a", "b", "c", "d")


def _canonical_key(tasks: list[str], partitions: list) -> str:
    """The documented definition of ``BranchingTree.key``."""
    text = json.dumps({"tasks": tasks, "partitions": partitions}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# -- canonical form and hashing ------------------------------------------------------------------


def test_group_order_does_not_matter() -> None:
    t1 = BranchingTree(TASKS, ((("a", "b", "c", "d"),), (("a", "b"), ("c", "d"))))
    t2 = BranchingTree(TASKS, ((("d", "c", "b", "a"),), (("d", "c"), ("b", "a"))))
    assert t1 == t2 and hash(t1) == hash(t2) and t1.key == t2.key
    assert t2.partitions[1] == (("a", "b"), ("c", "d"))
    assert len({t1, t2}) == 1


def test_lists_are_accepted_and_stored_as_tuples() -> None:
    tree = BranchingTree(["b", "a"], [[["a", "b"]], [["a"], ["b"]]])
    assert tree.tasks == ("b", "a")  # task order is kept as given
    assert tree.partitions == ((("b", "a"),), (("b",), ("a",)))  # canonical follows that order
    assert tree == BranchingTree(("b", "a"), ((("b", "a"),), (("b",), ("a",))))


def test_task_order_is_part_of_the_tree() -> None:
    assert BranchingTree.all_shared(("a", "b"), 2) != BranchingTree.all_shared(("b", "a"), 2)


def test_key_is_the_digest_of_the_canonical_json() -> None:
    tree = BranchingTree.from_split_points(TASKS, 3, {1: [("c", "a"), ("b", "d")]})
    expected = _canonical_key(list(TASKS), [[list(TASKS)], [["a", "c"], ["b", "d"]], [["a", "c"], ["b", "d"]]])
    assert tree.key == expected and len(tree.key) == 12
    assert tree.key != BranchingTree.all_shared(TASKS, 3).key


def test_different_trees_have_different_keys() -> None:
    trees = [
        BranchingTree.all_shared(TASKS, 3),
        BranchingTree.independent(TASKS, 3),
        BranchingTree.from_split_points(TASKS, 3, {1: [("a", "b"), ("c", "d")]}),
        BranchingTree.from_split_points(TASKS, 3, {2: [("a", "b"), ("c", "d")]}),
        BranchingTree.from_split_points(TASKS, 3, {1: [("a", "c"), ("b", "d")]}),
        BranchingTree.all_shared(TASKS, 4),
    ]
    assert len({t.key for t in trees}) == len(trees)
    assert len(set(trees)) == len(trees)


def test_key_is_stable_across_processes() -> None:
    tree = BranchingTree.from_split_points(TASKS, 3, {1: [("a", "b"), ("c", "d")]})
    code = (
        "from mtnas.tree import BranchingTree; "
        f"print(BranchingTree.from_split_points({TASKS!r}, 3, {{1: [('d', 'c'), ('b', 'a')]}}).key)"
    )
    root = Path(__file__).parents[1]
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert other.stdout.strip() == tree.key


# -- constructors and derived values -------------------------------------------------------------


def test_constructors() -> None:
    shared = BranchingTree.all_shared(TASKS, 3)
    indep = BranchingTree.independent(TASKS, 3)
    assert (shared.num_layers, shared.num_tasks) == (3, 4)
    assert shared.num_nodes == 3 and shared.first_split_layer is None and shared.first_split() is None
    assert indep.num_nodes == 12 and indep.first_split_layer == 0
    assert indep.first_split() == (("a",), ("b",), ("c",), ("d",))
    split = BranchingTree.from_split_points(TASKS, 4, {2: [("a", "b"), ("c", "d")], 3: [("a",), ("b",), ("c", "d")]})
    assert split.partitions[:2] == ((TASKS,),) * 2
    assert split.first_split_layer == 2 and split.first_split() == (("a", "b"), ("c", "d"))
    assert split.num_nodes == 1 + 1 + 2 + 3
    assert split.groups_at(3) == (("a",), ("b",), ("c", "d"))
    assert split.group_of("c", 3) == ("c", "d") and split.group_of("c", 1) == TASKS
    assert split.parent(3, ("b",)) == ("a", "b") and split.parent(0, TASKS) is None
    assert split.parent(2, ("d", "c")) == TASKS  # any task order names the group
    assert split.children(2, ("a", "b")) == (("a",), ("b",)) and split.children(3, ("a",)) == ()
    assert split.nodes()[:3] == [(0, TASKS), (1, TASKS), (2, ("a", "b"))]
    assert len(split.nodes()) == split.num_nodes


def test_single_task_tree() -> None:
    tree = BranchingTree.independent(("only",), 2)
    assert tree == BranchingTree.all_shared(("only",), 2)
    assert tree.describe() == "0-1: all"


def test_lookups_reject_bad_layers_tasks_and_groups() -> None:
    tree = BranchingTree.from_split_points(TASKS, 3, {1: [("a", "b"), ("c", "d")]})
    with pytest.raises(IndexError, match=r"layer 3 is outside 0\.\.2"):
        tree.groups_at(3)
    with pytest.raises(IndexError, match=r"layer -1 is outside"):
        tree.groups_at(-1)
    with pytest.raises(MtnasError, match=r"unknown task 'e'.*tasks are \['a', 'b', 'c', 'd'\]"):
        tree.group_of("e", 0)
    with pytest.raises(MtnasError, match=r"\['a', 'c'\] is not a group at layer 1"):
        tree.parent(1, ("a", "c"))


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partitions", "message"),
    [
        (
            ((("a", "b"), ("c", "d")), (("a", "b", "c", "d"),)),
            r"^layer 1: group \['a', 'b', 'c', 'd'\] rejoins tasks that were split at layer 0 "
            r"\(\['a', 'b'\] \| \['c', 'd'\]\)$",
        ),
        (
            ((TASKS,), (("a", "b"), ("c", "d")), (("a", "c"), ("b",), ("d",))),
            r"^layer 2: group \['a', 'c'\] rejoins tasks that were split at layer 1 \(\['a'\] \| \['c'\]\)$",
        ),
        (((TASKS,), (("a", "b", "c"),)), r"^layer 1: tasks \['d'\] are in no group$"),
        (((("a", "b"), ("b", "c", "d")),), r"^layer 0: tasks \['b'\] appear more than once"),
        (((("a", "b", "b", "c", "d"),),), r"^layer 0: tasks \['b'\] appear more than once"),
        (((TASKS,), (("a", "b", "c", "d"), ())), r"^layer 1: empty group"),
        (((("a", "b", "c", "d", "e"),),), r"^layer 0: unknown tasks \['e'\]"),
        (((("a", "b", "c", "dd"),),), r"^layer 0: unknown tasks \['dd'\] \(did you mean 'd'\?\)"),
        (((TASKS,), ("a", "b", "c", "d")), r"^layer 1: group 0 must be a list of task names, got 'a'$"),
        ((), r"at least one layer"),
    ],
)
def test_invalid_trees_name_layer_and_tasks(partitions: tuple, message: str) -> None:
    with pytest.raises(InvalidTreeError, match=message) as info:
        BranchingTree(TASKS, partitions)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ((), "at least one task"),
        (("a", "b", "a"), r"tasks repeat: \['a'\]"),
        ("abcd", "tasks must be a list of task names"),
        (("a", 3), "task names must be non-empty strings, got 3"),
    ],
)
def test_invalid_task_lists(tasks: tuple, message: str) -> None:
    with pytest.raises(InvalidTreeError, match=message):
        BranchingTree(tasks, ((("a",),),))


def test_invalid_trees_are_user_errors_and_value_errors() -> None:
    assert issubclass(InvalidTreeError, MtnasError) and issubclass(InvalidTreeError, ValueError)


def test_split_points_must_be_inside_and_refine() -> None:
    with pytest.raises(InvalidTreeError, match=r"split point at layer 3 is outside 0\.\.2"):
        BranchingTree.from_split_points(TASKS, 3, {3: [("a", "b"), ("c", "d")]})
    with pytest.raises(InvalidTreeError, match=r"^layer 2: group \['a', 'c'\] rejoins .* \(\['a'\] \| \['c'\]\)$"):
        BranchingTree.from_split_points(TASKS, 3, {1: [("a", "b"), ("c", "d")], 2: [("a", "c"), ("b", "d")]})
    with pytest.raises(InvalidTreeError, match="num_layers must be a positive integer, got 0"):
        BranchingTree.all_shared(TASKS, 0)


# -- conversions ---------------------------------------------------------------------------------


def test_check_against_space() -> None:
    tree = BranchingTree.all_shared(("digit", "parity"), 4)
    tree.check_against(("parity", "digit"), 4)  # same set, any order
    mismatch = r"unknown \['digit'\] \(did you mean 'digits'\?\), missing \['digits'\]"
    with pytest.raises(InvalidTreeError, match=mismatch):
        tree.check_against(("digits", "parity"), 4)
    with pytest.raises(InvalidTreeError, match=r"missing \['colour'\]; the space's tasks are"):
        tree.check_against(("digit", "parity", "colour"), 4)
    with pytest.raises(InvalidTreeError, match=r"unknown \['parity'\]; the space's tasks are \['digit'\]"):
        tree.check_against(("digit",), 4)
    with pytest.raises(InvalidTreeError, match="the tree has 4 layers, the space's backbone has 3"):
        tree.check_against(("digit", "parity"), 3)


def test_networkx_graph_is_a_tree_with_task_leaves() -> None:
    tree = BranchingTree.from_split_points(TASKS, 3, {1: [("a", "b"), ("c", "d")], 2: [("a",), ("b",), ("c", "d")]})
    graph = tree.to_networkx()
    assert nx.is_arborescence(graph)
    assert graph.number_of_nodes() == 1 + tree.num_nodes + len(TASKS)  # input root, nodes, leaves
    leaves = [n for n in graph if graph.out_degree(n) == 0]
    assert sorted(leaves) == [("task", t) for t in TASKS]
    assert graph.has_edge("input", (0, TASKS))
    assert graph.has_edge((1, ("c", "d")), (2, ("c", "d")))
    assert graph.has_edge((2, ("c", "d")), ("task", "d"))
    assert graph.nodes[(1, ("a", "b"))] == {"kind": "group", "layer": 1, "tasks": ("a", "b")}
    assert graph.nodes[("task", "a")]["layer"] == 3 and graph.nodes["input"]["kind"] == "input"


def test_networkx_graph_of_a_tree_split_at_layer_zero() -> None:
    graph = BranchingTree.independent(TASKS, 2).to_networkx()
    assert nx.is_arborescence(graph)
    assert graph.out_degree("input") == len(TASKS)
    assert graph.number_of_nodes() == 1 + 8 + 4


def test_describe() -> None:
    tasks = ("digit", "parity", "ge5", "orientation", "frequency", "diagonal")
    tree = BranchingTree.from_split_points(tasks, 4, {2: [tasks[:3], tasks[3:]]})
    assert tree.describe() == "0-1: all | 2-3: digit,parity,ge5 / orientation,frequency,diagonal"
    split = BranchingTree.from_split_points(TASKS, 4, {2: [("a", "b"), ("c", "d")], 3: [("a",), ("b",), ("c", "d")]})
    assert split.describe() == "0-1: all | 2: a,b / c,d | 3: a / b / c,d"
    assert BranchingTree.independent(TASKS, 3).describe() == "0-2: each"
    assert "\n" not in split.describe()


def test_render_text_shows_each_node_once() -> None:
    tree = BranchingTree.from_split_points(TASKS, 3, {1: [("a", "b"), ("c", "d")]})
    assert tree.render_text().splitlines() == [
        "layer 0: a, b, c, d",
        "├─ layers 1-2: a, b",
        "└─ layers 1-2: c, d",
    ]


def test_render_text_indents_by_depth() -> None:
    tree = BranchingTree.from_split_points(TASKS, 4, {1: [("a", "b"), ("c", "d")], 3: [("a",), ("b",), ("c", "d")]})
    assert tree.render_text().splitlines() == [
        "layer 0: a, b, c, d",
        "├─ layers 1-2: a, b",
        "│  ├─ layer 3: a",
        "│  └─ layer 3: b",
        "└─ layers 1-3: c, d",
    ]
    lines = BranchingTree.independent(("x", "y"), 2).render_text().splitlines()
    assert lines == ["layers 0-1: x", "layers 0-1: y"]


def test_dict_round_trip() -> None:
    tree = BranchingTree.from_split_points(TASKS, 3, {1: [("d", "b"), ("c", "a")]})
    data = tree.to_dict()
    assert data == {
        "tasks": ["a", "b", "c", "d"],
        "partitions": [[["a", "b", "c", "d"]], [["a", "c"], ["b", "d"]], [["a", "c"], ["b", "d"]]],
    }
    assert BranchingTree.from_dict(json.loads(json.dumps(data))) == tree
    with pytest.raises(InvalidTreeError, match="needs 'tasks' and 'partitions'"):
        BranchingTree.from_dict({"tasks": list(TASKS)})


def test_named_trees_and_typos() -> None:
    assert parse_tree_spec("all_shared", TASKS, 2) == BranchingTree.all_shared(TASKS, 2)
    assert parse_tree_spec("all-shared", TASKS, 2) == BranchingTree.all_shared(TASKS, 2)
    assert parse_tree_spec("independent", TASKS, 2).num_nodes == 8
    with pytest.raises(MtnasError, match=r"unknown tree 'independant' \(did you mean 'independent'\?\)"):
        parse_tree_spec("independant", TASKS, 2)
    with pytest.raises(MtnasError, match=r"unknown tree 'all-shard' \(did you mean 'all-shared'\?\)"):
        parse_tree_spec("all-shard", TASKS, 2)


# -- properties over random refining chains ------------------------------------------------------


@st.composite
def refining_chains(draw: st.DrawFn) -> BranchingTree:
    """A random tree: each layer splits every group of the one before by random labels."""
    tasks = tuple(draw(st.permutations([f"t{i}" for i in range(draw(st.integers(1, 7)))])))
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
    return BranchingTree(tasks, partitions)


@settings(max_examples=80, deadline=None)
@given(refining_chains(), st.randoms(use_true_random=False))
def test_round_trip_and_canonical_form(tree: BranchingTree, rnd: random.Random) -> None:
    # canonical form is idempotent
    assert BranchingTree(tree.tasks, tree.partitions).partitions == tree.partitions
    order = {t: i for i, t in enumerate(tree.tasks)}
    for p in tree.partitions:
        assert [order[g[0]] for g in p] == sorted(order[g[0]] for g in p)
        assert all(list(g) == sorted(g, key=order.__getitem__) for g in p)
    # exact round trip through JSON
    data = json.loads(json.dumps(tree.to_dict()))
    assert data == tree.to_dict() and BranchingTree.from_dict(data) == tree
    # shuffling groups and the tasks inside them gives an equal tree
    shuffled = [rnd.sample([rnd.sample(list(g), len(g)) for g in p], len(p)) for p in tree.partitions]
    again = BranchingTree(list(tree.tasks), shuffled)
    assert again == tree and hash(again) == hash(tree) and again.key == tree.key
    assert tree.key == _canonical_key(list(tree.tasks), tree.to_dict()["partitions"])
    # the graph is one tree with a leaf per task
    graph = tree.to_networkx()
    assert nx.is_arborescence(graph) and graph.number_of_nodes() == 1 + tree.num_nodes + tree.num_tasks
    assert len(tree.render_text().splitlines()) <= tree.num_nodes


@pytest.mark.parametrize("tasks", [[None, "b"], ["a", None], [["a"], "b"], ["a", ""], [3]])
def test_task_names_that_are_not_strings_are_refused(tasks: list) -> None:
    with pytest.raises(InvalidTreeError, match="task names must be non-empty strings"):
        BranchingTree(tasks, [[["a", "b"]]])
