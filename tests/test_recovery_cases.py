"""The recovery suite's cases and criteria, and the tree-choosing methods (rsa, tag): no training here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks._cases import CASES, DEPTH_LAYERS, LEFT, RIGHT, TWO_DIGITS, TWO_GRATINGS, TWO_LEFT, TWO_MIXED, TWO_RIGHT
from benchmarks.recovery_suite import suite_report, truth_report
from mtnas.model import relative_cost
from mtnas.search import METHODS, Supernet, best_partition, climb, count_partitions, partition_labels
from mtnas.search._fixed_routing import encode_tree, tree_fits
from mtnas.search._rsa import rdm, rsa_dissimilarity
from mtnas.space import load_resolved
from mtnas.tree import BranchingTree


@pytest.fixture(scope="module")
def loaded():
    return {name: load_resolved(case.space) for name, case in CASES.items()}


def test_every_case_has_a_builtin_space_references_and_claims(loaded) -> None:
    for name, case in CASES.items():
        space, bundle = loaded[name]
        refs = case.references(space, bundle)
        assert "all-shared" in refs
        for claim in case.claims:
            assert claim.better in refs and claim.worse in refs and claim.kind in ("beats", "ties")
        for tree in refs.values():
            tree.check_against(space.task_names, space.num_layers)


def test_planted_trees_are_recovered_and_all_shared_is_not(loaded) -> None:
    for name in ("digit_gratings", "synth_attributes"):
        space, bundle = loaded[name]
        t, n = space.task_names, space.num_layers
        planted = BranchingTree.from_split_points(t, n, {1: bundle.planted_groups})
        assert CASES[name].criterion(planted, space, bundle)[0]
        assert not CASES[name].criterion(BranchingTree.all_shared(t, n), space, bundle)[0]


def test_levels_keeps_the_hard_groups_and_the_levels_off_the_digits(loaded) -> None:
    space, bundle = loaded["levels"]
    refs = CASES["levels"].references(space, bundle)
    crit = CASES["levels"].criterion
    for label in ("3 factors after layer 1", "digit | grating+level after 1"):
        assert crit(refs[label], space, bundle)[0], label
    assert not crit(refs["digit+level | grating after 1"], space, bundle)[0]
    assert not crit(refs["wrong 3 groups after layer 1"], space, bundle)[0]
    assert not crit(refs["all-shared"], space, bundle)[0]


def test_depth_needs_the_groups_and_the_layer(loaded) -> None:
    space, bundle = loaded["depth"]
    t, n = space.task_names, space.num_layers
    for layer in range(n):
        tree = BranchingTree.from_split_points(t, n, {layer: (LEFT, RIGHT)})
        assert CASES["depth"].criterion(tree, space, bundle)[0] == (layer in DEPTH_LAYERS)


def test_two_level_needs_digit_grating_first_and_left_right_deeper(loaded) -> None:
    space, bundle = loaded["two_level"]
    t, n = space.task_names, space.num_layers
    crit = CASES["two_level"].criterion
    first = (TWO_DIGITS, TWO_GRATINGS)
    three = (TWO_LEFT, TWO_RIGHT, TWO_GRATINGS)
    for deep in (2, 3):  # left | right at any deeper layer, the gratings split further or not
        assert crit(BranchingTree.from_split_points(t, n, {1: first, deep: three}), space, bundle)[0], deep
    assert crit(BranchingTree.from_split_points(t, n, {0: first, 2: (*three[:2], ("orientation",), ("frequency",))}),
                space, bundle)[0]
    ok, detail = crit(BranchingTree.from_split_points(t, n, {1: first, 2: three, 3: [(x,) for x in t]}), space, bundle)
    assert ok and detail == "ARI 1.00 at layer 1, left|right at layer 2"
    assert not crit(BranchingTree.from_split_points(t, n, {1: first}), space, bundle)[0]  # one level
    assert not crit(BranchingTree.from_split_points(t, n, {1: three}), space, bundle)[0]  # three groups at once
    assert not crit(BranchingTree.from_split_points(t, n, {2: three}), space, bundle)[0]
    assert not crit(BranchingTree.from_split_points(t, n, {1: first, 2: (*TWO_MIXED, TWO_GRATINGS)}), space, bundle)[0]
    assert not crit(BranchingTree.all_shared(t, n), space, bundle)[0]
    refs = CASES["two_level"].references(space, bundle)
    assert [label for label, tree in refs.items() if crit(tree, space, bundle)[0]] == [
        "two-level: digit|grating at 1, left|right at 2", "two-level, left|right at 3"]


def test_null_accepts_only_the_cheapest_trees(loaded) -> None:
    space, bundle = loaded["null"]
    t, n = space.task_names, space.num_layers
    assert CASES["null"].criterion(BranchingTree.all_shared(t, n), space, bundle)[0]
    assert not CASES["null"].criterion(BranchingTree.independent(t, n), space, bundle)[0]


def test_encoded_trees_are_derived_back(loaded) -> None:
    space, bundle = loaded["levels"]
    net = Supernet.from_space(space)
    t, n = space.task_names, space.num_layers
    refs = CASES["levels"].references(space, bundle)
    deep = BranchingTree.from_split_points(t, n, {0: (t[:3], t[3:]), 2: (t[:3], t[3:6], t[6:])})
    for tree in [*refs.values(), deep]:
        encode_tree(net.routing, tree)
        assert net.routing.derive().tree == tree
    assert not tree_fits(net.routing, BranchingTree.independent(t, n))  # 9 groups, 3 nodes
    assert net.routing.derive().tree == deep  # tree_fits leaves the logits alone
    assert relative_cost(BranchingTree.all_shared(t, n), space) == 1.0
    assert relative_cost(refs["3 factors after layer 1"], space) > 2.0
    for metric in ("flops", "params"):  # the one relative cost is what the supernet's expected cost counts
        costs, head = net.block_costs(metric)
        for tree in [*refs.values(), deep]:
            blocks = sum(len(p) * c for p, c in zip(tree.partitions, costs)) + head
            assert relative_cost(tree, space, metric) == pytest.approx(blocks / (sum(costs) + head), rel=1e-12)


def test_rsa_dissimilarity_is_zero_for_equal_representations_and_symmetric() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g)
    d = rsa_dissimilarity([rdm(a), rdm(a * 2 + 1), rdm(b)])
    assert d.shape == (3, 3) and np.allclose(d, d.T)
    assert d[0, 1] == pytest.approx(0.0, abs=1e-9)
    assert d[0, 2] > 0.5


def test_best_partition_climbs_to_the_best_grouping() -> None:
    truth = np.array([0, 0, 0, 1, 1, 1])
    affinity = np.where(truth[:, None] == truth[None], 1.0, -1.0)

    def score(labels):
        return float((affinity * (labels[:, None] == labels[None])).sum())

    labels = climb(score, np.array([0, 1, 0, 1, 0, 1]), 2)
    assert len(set(zip(labels, truth))) == 2
    assert len(set(zip(best_partition(score, 2, np.where(affinity > 0, 0.0, 1.0)), truth))) == 2


def test_the_methods_are_registered_and_cite_their_papers() -> None:
    import sys

    assert {"trained", "pairs", "dmtg", "rsa", "tag"} <= set(METHODS.names())
    assert "Vandenhende" in type(METHODS.get("rsa").routing).__doc__
    # the trained methods, TAG and DMTG cite theirs in their modules
    for name, author in (("trained", "Standley"), ("pairs", "Standley"), ("dmtg", "Gao"), ("tag", "Fifty")):
        assert author in sys.modules[type(METHODS.get(name)).__module__].__doc__, name


def test_suite_report_counts_cases_at_four_of_five(capsys) -> None:
    rows = [{"case": "a", "method": m, "seed": s, "recovered": s < k, "seconds": 1.0}
            for m, k in (("affinity", 4), ("tag", 3)) for s in range(5)]
    rows += [{"case": "b", "method": "affinity", "seed": s, "recovered": False, "seconds": 2.0} for s in range(5)]
    suite_report(rows, ["a", "b"], ["affinity", "tag"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "recovery suite: 1/2 cases at >= 4/5"
    assert "recovery suite [tag]: 0/1 cases at >= 4/5" in out


def test_the_score_is_judged_with_its_delta_m_and_cost_shown(loaded, capsys) -> None:
    space, bundle = loaded["two_level"]
    refs = CASES["two_level"].references(space, bundle)
    assert relative_cost(refs["all-shared"], space) == 1.0
    assert relative_cost(refs["left|right|grating at 1"], space) > relative_cost(
        refs["two-level: digit|grating at 1, left|right at 2"], space) > relative_cost(refs["digit|grating at 1"], space)
    best = "two-level: digit|grating at 1, left|right at 2"
    rows = [{"case": "two_level", "label": label, "seed": seed, "val": -float(i) - seed, "test": -float(i),
             "delta_m": -float(i), "cost": 1.0 + i / 10, "params": 100}
            for i, label in enumerate([best, *(k for k in refs if k != best)]) for seed in (0, 1)]
    assert truth_report(rows, ["two_level"])
    out = capsys.readouterr().out
    assert "score = delta-m less search.gain_per_cost points per all-shared network of extra FLOPs, 2 seeds" in out
    assert "val delta-m %  FLOPs x" in out
    assert out.count("-> holds") == 5


@pytest.mark.parametrize("method", ["affinity", "rsa"])
def test_a_tiny_search_logs_what_its_method_measured(loaded, method: str) -> None:
    from dataclasses import replace

    from benchmarks.recovery_suite import _capture_state, _diagnostics
    from mtnas.search import search_tree

    space, bundle = loaded["levels"]
    space = replace(space, search=replace(space.search, epochs=3, warmup_epochs=2, method=method))
    small = replace(bundle, train=bundle.train.select(slice(0, 96)))
    with _capture_state(method) as captured:
        result = search_tree(space, small, seed=0)
    diag = _diagnostics(captured["state"], result)
    assert "init" not in vars(METHODS.get(method))  # the wrapper is gone
    assert np.asarray(diag["heads"]).shape == (9, 3)
    key = "dissimilarity" if method == "rsa" else "affinity"
    assert np.asarray(diag[key]).shape[-2:] == (9, 9)
    if method != "affinity":
        assert result.tree == captured["state"].tree


def test_small_groupings_are_searched_exactly() -> None:
    assert len(partition_labels(9, 3)) == count_partitions(9, 3) == 3025
    assert len(partition_labels(4, 2)) == 7
    # A score whose best partition hill climbing from this start cannot reach in single moves.
    best = (0, 0, 1, 1, 1, 0)

    def score(labels: np.ndarray) -> float:
        return float(tuple(labels) == best)

    assert tuple(climb(score, np.array([0, 1, 0, 1, 0, 1]), 2)) != best
    assert tuple(best_partition(score, 2, np.ones((6, 6)))) == best
