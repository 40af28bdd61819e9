"""The trained search: stacked trees, trained evidence and its cache, pair estimates, the choice."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mtnas.model import BranchedNet
from mtnas.search import METHODS, Evidence, PairModel, Split, combined_pairs, parsimonious, search_tree
from mtnas.search._evidence import Evaluated
from mtnas.space import load_resolved, load_space
from mtnas.train import subset_space, train_tree, train_trees
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


def test_other_search_settings_share_the_trained_evidence_but_another_budget_does_not() -> None:
    space, bundle = _small()
    shared = BranchingTree.all_shared(space.task_names, space.num_layers)
    Evidence(space, bundle, seed=1).evaluate_all([shared])
    # a trial samples other search settings: what the first search trained is what it would train
    sampled = replace(space, search=replace(space.search, gain_per_cost=20.0, method="pairs", tau0=3.0))
    assert sampled.training_hash == space.training_hash and sampled.content_hash != space.content_hash
    again = Evidence(sampled, bundle, seed=1)
    again.evaluate_all([shared])
    assert again.trained == 0
    longer = replace(space, search=replace(space.search, proxy_epochs=2))  # trees of another budget differ
    assert Evidence(longer, bundle, seed=1).proxy.training_hash != again.proxy.training_hash


def test_a_damaged_cache_entry_is_trained_again(tmp_path) -> None:
    space, bundle = _small()
    tree = BranchingTree.all_shared(space.task_names, space.num_layers)
    Evidence(space, bundle, seed=0).evaluate(tree)
    from mtnas.core import DamagedEntryWarning
    from mtnas.train import cache_dir, read_result

    (entry,) = (cache_dir() / "trees").rglob(f"{tree.key}.json")
    entry.write_text("{not json")
    evidence = Evidence(space, bundle, seed=0)
    with pytest.warns(DamagedEntryWarning, match=str(entry)):
        evidence.evaluate(tree)
    assert evidence.trained == 1 and read_result(entry, evidence.proxy).tree == tree


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
    # t0 loses 10 points beside each other task, which lose nothing: summed, three partners cost
    # three times one; averaged (Standley et al.), the same
    harm = np.zeros((4, 4))
    harm[0, 1:] = -10.0
    four = ("t0", "t1", "t2", "t3")
    one, three = (("t0", "t1"), ("t2", "t3")), (four,)
    summed, mean = PairModel(four, harm), PairModel(four, harm, "mean")
    assert summed.estimate(one) == pytest.approx(-10 / 4) and summed.estimate(three) == pytest.approx(-30 / 4)
    assert mean.estimate(one) == mean.estimate(three) == pytest.approx(-10 / 4)


def test_pairs_of_two_budgets_add_in_units_of_their_own_magnitude() -> None:
    tasks = ("a", "b", "c", "d")
    short = PairModel(tasks, 10 * _blocks([[0, 1], [2, 3]]))  # large harms, one structure
    whole = PairModel(tasks, _blocks([[0, 2], [1, 3]]))  # small harms, another: it weighs as much
    both = combined_pairs([short, whole])
    assert both.estimate((("a", "b"), ("c", "d"))) == pytest.approx(both.estimate((("a", "c"), ("b", "d"))))
    assert combined_pairs([short]).best_groups(2) == short.best_groups(2)


def test_the_choice_is_the_cheapest_within_training_noise_of_the_best() -> None:
    class Known:  # an Evidence whose trees have set delta-m: score = delta-m - 5 (cost - 1)
        def __init__(self, values: dict) -> None:
            self.values = values

        def evaluate_all(self, trees):
            return [Evaluated(t, None, self.values[t.key][0], self.values[t.key][1]) for t in trees]

    tasks = ("a", "b", "c")
    trees = [BranchingTree.all_shared(tasks, 2), Split(1, (("a", "b"), ("c",))).tree(tasks, 2),
             Split(0, (("a", "b"), ("c",))).tree(tasks, 2)]
    first = Known({trees[0].key: (-10.0, 1.0), trees[1].key: (0.0, 1.2), trees[2].key: (5.0, 2.0)})
    # a second seed 2 points higher on both splits: sigma = sqrt(mean(d^2) / 2) = sqrt(4 / 3); mean scores
    # 0 (split at layer 1) and 1 (at the input), within sigma of each other: the cheaper wins
    noisy = Known({trees[0].key: (-10.0, 1.0), trees[1].key: (2.0, 1.2), trees[2].key: (7.0, 2.0)})
    choice, sigma = parsimonious(first, noisy, trees, 5.0)
    assert choice.tree == trees[1] and sigma == pytest.approx((4 / 3) ** 0.5)
    # with no noise between the seeds the best score wins outright
    assert parsimonious(first, first, trees, 5.0)[0].tree == trees[2]


def test_trained_search_is_the_default_and_records_what_it_trained(tmp_path) -> None:
    space, bundle = _small(epochs=3)  # groupings compared after 1 epoch, the tree chosen after 3
    assert space.search.method == "trained" and METHODS.get("trained").kind == "trained"
    result = search_tree(space, bundle, seed=0)
    assert result.derived is None and result.routing == {} and result.save_routing(tmp_path / "r.npz") is None
    saved = json.loads(result.save_candidates(tmp_path / "candidates.json").read_text())
    rows = saved["trees"]
    assert saved["chosen"] == result.tree.describe() and saved["noise"] >= 0
    # the trees of the choice: all-shared and each grouping at every layer, trained with two seeds
    assert len(rows) >= 2 and all(r["delta_m_again"] is not None for r in rows)
    assert {r["epochs"] for r in rows} == {space.proxy_epochs} and "0-3: all" in [r["tree"] for r in rows]
    assert saved["pairs"] == 2 * 15  # every pair of the six tasks, for the short and the whole budget
    BranchedNet.from_space(result.tree, space).load_state_dict(dict(result.weights))


def test_a_chosen_trees_weights_are_kept_in_the_cache_and_read_by_the_next_search(monkeypatch) -> None:
    import mtnas.search._evidence as evidence_module

    space, bundle = _small()
    split = BranchingTree.from_split_points(space.task_names, 4, {2: (space.task_names[:3], space.task_names[3:])})
    first = Evidence(space, bundle, seed=3)
    first.evaluate(split)
    state = first.weights(split)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    with monkeypatch.context() as patched:
        patched.setattr(evidence_module, "train_tree_model", no_training)
        again = Evidence(space, bundle, seed=3)  # the next trial's search: the same tree, from the cache
        assert again.evaluate(split).delta_m == first.evaluate(split).delta_m
        kept = again.weights(split)
    assert kept.keys() == state.keys() and all(torch.equal(kept[k], state[k]) for k in state)
    (path,) = (evidence_module.cache_dir() / "trees").rglob(f"{split.key}.safetensors")
    path.write_bytes(b"damaged")
    rebuilt = Evidence(space, bundle, seed=3).weights(split)  # a damaged file: trained again, written anew
    assert all(torch.equal(rebuilt[k], state[k]) for k in state)
    assert path.stat().st_size > 100
