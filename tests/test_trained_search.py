"""The trained search: stacked trees, trained evidence and its cache, pair estimates, the local search."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mtnas.model import BranchedNet
from mtnas.search import METHODS, Evidence, PairModel, Split, climb, neighbours, search_tree, split_of
from mtnas.search._evidence import Evaluated
from mtnas.space import load_resolved, load_space
from mtnas.train import TreeResult, subset_space, train_tree, train_trees
from mtnas.tree import BranchingTree

CPU = torch.device("cpu")


def _small(name: str = "digit_gratings", epochs: int = 1, n: int = 128):
    space = load_space(name)
    space = replace(space, dataset=replace(space.dataset, args={**space.dataset.args, "n_train": n, "n_val": 64,
                                                                "n_test": 64}),
                    training=replace(space.training, epochs=epochs), search=replace(space.search, proxy_epochs=None))
    return load_resolved(space)


def test_trees_of_one_wiring_train_stacked_as_each_would_alone() -> None:
    space, bundle = _small("digit_grating_kinds")
    t = space.task_names
    splits = [BranchingTree.from_split_points(t, 4, {1: (g, tuple(x for x in t if x not in g))})
              for g in itertools.combinations(t, 3)][:4]  # four trees of one wiring: split at 1, two groups
    pairs = [BranchingTree.all_shared(p, 4) for p in itertools.combinations(t, 2)][:4]  # all-shared over pairs
    trees = splits + pairs
    stacked = train_trees(space, bundle, trees, device=CPU, seed=2)
    for tree, (result, state) in zip(trees, stacked):
        own = space if tree.tasks == t else subset_space(space, tree.tasks)
        alone = train_tree(tree, own, bundle, device=CPU, seed=2)
        for task in tree.tasks:
            for metric, value in alone.val[task].items():
                assert result.val[task][metric] == pytest.approx(value, rel=2e-3, abs=2e-3), (tree.describe(), task)
        BranchedNet.from_space(tree, own).load_state_dict(state)  # strict: the stack's weights are the tree's


def test_evidence_is_the_trial_training_and_is_remembered_on_disk() -> None:
    space, bundle = _small()
    evidence = Evidence(space, bundle, seed=1)
    shared = BranchingTree.all_shared(space.task_names, space.num_layers)
    split = BranchingTree.from_split_points(space.task_names, 4, {2: (space.task_names[:3], space.task_names[3:])})
    first = evidence.evaluate_all([shared, split])
    # the all-shared tree trained as evidence is the baselines' all-shared tree: same budget and seed
    assert first[0].result.val == evidence.baselines.all_shared.val
    assert first[0].cost == 1.0 and first[1].cost > 1.0
    assert evidence.trained == 2
    again = Evidence(space, bundle, seed=1)  # another process, say: the cache answers
    assert [e.delta_m for e in again.evaluate_all([shared, split])] == [e.delta_m for e in first]
    assert again.trained == 0
    # the weights of a tree trained here load into its network
    BranchedNet.from_space(split, space).load_state_dict(evidence.weights(split))


def test_a_damaged_cache_entry_is_trained_again(tmp_path) -> None:
    space, bundle = _small()
    tree = BranchingTree.all_shared(space.task_names, space.num_layers)
    Evidence(space, bundle, seed=0).evaluate(tree)
    from mtnas.train import cache_dir

    (entry,) = (cache_dir() / "trees").rglob(f"{tree.key}.json")
    entry.write_text("{not json")
    evidence = Evidence(space, bundle, seed=0)
    evidence.evaluate(tree)
    assert evidence.trained == 1 and TreeResult.from_dict(json.loads(entry.read_text())).tree == tree


def test_pair_deltas_are_relative_to_the_single_task_networks() -> None:
    space, bundle = _small()
    evidence = Evidence(space, bundle, seed=0)
    (d,) = evidence.subset_deltas([("digit", "orientation")])
    pair = train_tree(BranchingTree.all_shared(("digit", "orientation"), 4), subset_space(evidence.proxy, ("digit", "orientation")),
                      bundle, device=CPU, seed=0)
    solo = evidence.baselines.metrics("val")["digit"]["accuracy"]
    assert d["digit"] == pytest.approx(100 * (pair.val["digit"]["accuracy"] - solo) / solo, abs=0.5)


def _blocks(groups: list[list[int]], inside: float = -1.0, across: float = -10.0) -> np.ndarray:
    t = sum(len(g) for g in groups)
    label = {i: g for g, members in enumerate(groups) for i in members}
    return np.array([[0.0 if i == j else inside if label[i] == label[j] else across for j in range(t)] for i in range(t)])


def test_pair_estimates_recover_planted_blocks_and_add_up_the_harm() -> None:
    tasks = tuple(f"t{i}" for i in range(7))
    model = PairModel(tasks, _blocks([[0, 3, 5], [1, 2], [4, 6]]))
    assert set(model.best_groups(3)) == {("t0", "t3", "t5"), ("t1", "t2"), ("t4", "t6")}
    assert model.halves(("t0", "t1", "t2", "t3")) in ((("t0", "t3"), ("t1", "t2")), (("t1", "t2"), ("t0", "t3")))
    # t0 loses 10 points beside each other task, which lose nothing: summed, three partners cost
    # three times one; averaged (Standley et al.), the same
    harm = np.zeros((4, 4))
    harm[0, 1:] = -10.0
    four = ("t0", "t1", "t2", "t3")
    one, three = (("t0", "t1"), ("t2", "t3")), (four,)
    summed, mean = PairModel(four, harm), PairModel(four, harm, "mean")
    assert summed.estimate(one) == pytest.approx(-10 / 4) and summed.estimate(three) == pytest.approx(-30 / 4)
    assert mean.estimate(one) == mean.estimate(three) == pytest.approx(-10 / 4)


def test_neighbours_are_one_edit_away_and_respect_the_limits() -> None:
    tasks = ("a", "b", "c", "d")
    split = Split(1, (("a", "b"), ("c", "d")))
    found = neighbours(split, branchable=[0, 1, 2], max_groups=[3, 3, 2], halves=lambda g: ((g[0],), g[1:]))
    assert len(found["move"]) == 4 + 4  # each task to the other group, or alone (3 groups allowed at layer 1)
    assert found["merge"] == [Split(None, (("a", "b", "c", "d"),))]
    assert {s.layer for s in found["shift"]} == {0, 2}
    assert all(len(s.groups) == 3 for s in found["split"])
    for kind in found.values():
        for s in kind:
            tree = s.tree(tasks, 3)
            assert tree.first_split_layer == s.layer
            assert set(map(frozenset, tree.first_split() or (tasks,))) == set(map(frozenset, s.groups))
    # a layer that holds only two groups takes no three-group shift
    wide = neighbours(Split(1, (("a",), ("b",), ("c", "d"))), branchable=[0, 1, 2], max_groups=[3, 3, 2])
    assert {s.layer for s in wide["shift"]} == {0}


def test_climb_moves_to_better_trained_neighbours_until_none_is() -> None:
    tasks = ("a", "b", "c", "d")
    best = Split(2, (("a", "b"), ("c", "d")))
    target = best.tree(tasks, 3)

    def fake(tree: BranchingTree) -> Evaluated:
        s = split_of(tree)
        wrong = 0 if s.layer is None else sum(len(set(g) - set(h)) for g, h in zip(sorted(s.groups), sorted(best.groups)))
        value = -abs((s.layer or 0) - 2) - wrong - 3 * (s.layer is None) - abs(len(s.groups) - 2)
        return Evaluated(tree, None, float(value), 1.0)

    def candidates(current: Evaluated) -> list[BranchingTree]:
        found = neighbours(split_of(current.tree), branchable=[0, 1, 2], max_groups=[2, 2, 2],
                           halves=lambda g: ((g[0],), g[1:]))
        return [s.tree(tasks, 3) for kind in found.values() for s in kind]

    start = fake(BranchingTree.all_shared(tasks, 3))
    end, path = climb(start, lambda trees: [fake(t) for t in trees], candidates, lambda e: e.delta_m)
    assert end.tree == target
    assert [e.delta_m for e in path] == sorted(e.delta_m for e in path)  # every step improves


def test_trained_search_is_the_default_and_records_what_it_trained(tmp_path) -> None:
    space, bundle = _small(epochs=3)  # groupings compared after 1 epoch, the tree chosen after 3
    assert space.search.method == "trained" and METHODS.get("trained").kind == "trained"
    result = search_tree(space, bundle, seed=0)
    assert result.derived is None and result.routing == {} and result.save_routing(tmp_path / "r.npz") is None
    saved = json.loads(result.save_candidates(tmp_path / "candidates.json").read_text())
    rows = saved["trees"]
    assert saved["chosen"] == result.tree.describe() and saved["noise"] >= 0
    assert any(r["step"] == 0 for r in rows)
    again = [r for r in rows if r["delta_m_again"] is not None]  # the trees of the choice, trained with two seeds
    assert len(again) >= 2 and saved["chosen"] in [r["tree"] for r in again] and rows[:len(again)] == again
    assert {r["epochs"] for r in again} == {space.proxy_epochs}
    grouping = [r for r in rows if r["delta_m_again"] is None]  # the grouping search's, at its shorter budget
    assert grouping and {r["epochs"] for r in grouping} == {space.grouping_epochs}
    BranchedNet.from_space(result.tree, space).load_state_dict(dict(result.weights))
