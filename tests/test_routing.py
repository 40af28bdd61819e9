"""Routing: sampling, derived trees, and the expected cost against Monte-Carlo and exact trees."""

from __future__ import annotations

import pytest
import torch

from mtnas.model import tree_cost
from mtnas.search import Routing, Supernet, effective_branches, tree_of
from mtnas.space import load_resolved
from mtnas.tree import BranchingTree

TASKS = tuple(f"t{i}" for i in range(5))


def _random_routing(seed: int, branches=(3, 3, 2, 4), scale: float = 2.0) -> Routing:
    torch.manual_seed(seed)
    routing = Routing(TASKS, branches, (True,) * len(branches))
    with torch.no_grad():
        for p in routing.parameters():
            p.normal_(0, scale)
    return routing


def test_effective_branches_follow_non_branching_layers() -> None:
    assert effective_branches((3, 3, 4, 2), (False, True, False, True)) == (1, 3, 3, 2)
    assert effective_branches((3, 2), (True, True)) == (3, 2)


@pytest.mark.parametrize("seed", range(20))
def test_derived_tree_is_valid_for_random_logits(seed: int) -> None:
    routing = _random_routing(seed)
    derived = routing.derive()
    tree = derived.tree
    assert tree.tasks == TASKS and tree.num_layers == 4
    # Each tree node maps to a distinct supernet node of its layer, and tasks follow argmax routes.
    for layer in range(4):
        nodes = [derived.node_of[layer, g] for g in tree.groups_at(layer)]
        assert len(set(nodes)) == len(nodes)
    heads = routing.head_logits.argmax(-1).tolist()
    last = tree.groups_at(3)
    for t, task in enumerate(TASKS):
        group = next(g for g in last if task in g)
        assert derived.node_of[3, group] == heads[t]


def test_tree_of_groups_tasks_by_shared_nodes() -> None:
    # layer 2: node 0 <- node 0, nodes 1 and 2 <- node 1 of layer 1; heads a, b, c -> nodes 0, 1, 2
    derived = tree_of(("a", "b", "c"), ((0,), (0, 0), (0, 1, 1)), head_choice=(0, 1, 2))
    assert derived.tree.partitions == (
        (("a", "b", "c"),),
        (("a",), ("b", "c")),
        (("a",), ("b",), ("c",)),
    )
    assert derived.node_of[1, ("b", "c")] == 1 and derived.node_of[2, ("c",)] == 2


def test_expected_cost_matches_monte_carlo() -> None:
    routing = _random_routing(3, scale=1.0)
    costs = [1.0, 2.0, 3.0, 0.5]
    expected = float(routing.expected_cost(costs, head_cost=1.5))
    torch.manual_seed(0)
    samples = []
    for _ in range(4000):
        s = routing.sample(1.0, hard=True)
        samples.append((sum(len(u) * c for u, c in zip(s.used, costs)) + 1.5) / (sum(costs) + 1.5))
    mc = sum(samples) / len(samples)
    # The formula treats node usages as independent events: an approximation; stated tolerance 5%.
    assert expected == pytest.approx(mc, rel=0.05)


def test_expected_cost_of_one_path_and_of_separate_paths() -> None:
    space, _ = load_resolved("digit_gratings")
    net = Supernet.from_space(space, branches=len(space.tasks))
    blocks, heads = net.block_costs("flops")
    with torch.no_grad():
        net.routing.head_logits.fill_(-1e4)
        net.routing.head_logits[:, 0] = 1e4
        for logits in net.routing.node_logits:
            logits.fill_(-1e4)
            logits[:, 0] = 1e4
    assert float(net.routing.expected_cost(blocks, heads)) == pytest.approx(1.0)
    with torch.no_grad():
        net.routing.head_logits.copy_(torch.eye(len(space.tasks)) * 2e4 - 1e4)
        for logits in net.routing.node_logits:
            logits.copy_(torch.eye(len(space.tasks)) * 2e4 - 1e4)
    t, n = space.task_names, space.num_layers
    ratio = tree_cost(BranchingTree.independent(t, n), space).flops / tree_cost(BranchingTree.all_shared(t, n), space).flops
    assert float(net.routing.expected_cost(blocks, heads)) == pytest.approx(ratio, rel=1e-6)


def test_expected_cost_is_differentiable_in_every_logit() -> None:
    routing = _random_routing(1, scale=0.5)
    routing.expected_cost([1.0, 1.0, 1.0, 1.0]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in routing.parameters())


def test_expected_cost_is_fast_polynomial_at_40_tasks() -> None:
    tasks = tuple(f"t{i}" for i in range(40))
    routing = Routing(tasks, (8,) * 16, (True,) * 16)
    value = routing.expected_cost([1.0] * 16)
    assert 1.0 <= float(value) <= 8.0
