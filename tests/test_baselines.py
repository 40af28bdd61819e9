"""Single-task baselines trained as one stacked model equal the networks trained one at a time."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mtnas.model import BranchedNet, tree_cost
from mtnas.space import load_resolved
from mtnas.train import (
    SingleTaskStack,
    compute_baselines,
    single_task_space,
    train_model,
    train_single_tasks,
    train_tree,
)
from mtnas.tree import BranchingTree
from tests.conftest import write_tiny_space

CPU = torch.device("cpu")


def _tiny(tmp_path: Path, base: str = "digit_gratings", epochs: int = 2):
    return load_resolved(str(write_tiny_space(tmp_path / "tiny.yaml", base=base, epochs=epochs)))


def _alone(space, bundle, task: str, seed: int):
    """Task ``task``'s baseline network trained alone, as compute_baselines did before stacking."""
    torch.manual_seed(seed)
    solo = single_task_space(space, task)
    net = BranchedNet.from_space(BranchingTree.all_shared((task,), space.num_layers), solo)
    return net, train_model(net, solo, bundle, device=CPU, seed=seed)


def _assert_metrics_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for task in a:
        assert a[task].keys() == b[task].keys()
        for name, value in a[task].items():
            assert value == pytest.approx(b[task][name], rel=1e-5, abs=1e-6), (task, name)


def test_stacked_networks_start_from_each_networks_own_initial_weights(tmp_path: Path) -> None:
    space, _ = _tiny(tmp_path)
    stack = SingleTaskStack.from_space(space, seed=4)
    states = stack.state_dicts()
    for task in space.task_names:
        torch.manual_seed(4)
        alone = BranchedNet.from_space(BranchingTree.all_shared((task,), space.num_layers), single_task_space(space, task))
        expected = alone.state_dict()
        assert states[task].keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(states[task][key], value), (task, key)
    # six digit_gratings heads: digit (10 classes), orientation (4), and four 2-class heads stacked together
    assert sorted(len(g) for g in stack.head_groups) == [1, 1, 4]


def test_batched_training_equals_each_network_trained_alone(tmp_path: Path) -> None:
    space, bundle = _tiny(tmp_path)
    seed = 3
    stack = SingleTaskStack.from_space(space, seed=seed)
    equal = replace(space, training=replace(space.training, balancing="equal"))
    together = train_model(stack, equal, bundle, device=CPU, seed=seed)
    states = stack.state_dicts()
    for task in space.task_names:
        net, alone = _alone(space, bundle, task, seed)
        # per-epoch mean training loss: the same batches, the same updates
        for epoch_together, epoch_alone in zip(together.history, alone.history, strict=True):
            assert epoch_together[task] == pytest.approx(epoch_alone[task], rel=1e-5)
        _assert_metrics_equal({task: together.val[task]}, alone.val)
        _assert_metrics_equal({task: together.test[task]}, alone.test)
        for key, value in net.state_dict().items():  # weights and BatchNorm running statistics
            if value.is_floating_point():
                assert torch.allclose(states[task][key], value, rtol=1e-4, atol=1e-5), (task, key)
            else:
                assert torch.equal(states[task][key], value), (task, key)


def test_train_single_tasks_batched_or_not_give_the_same_results(tmp_path: Path) -> None:
    space, bundle = _tiny(tmp_path, epochs=1)
    batched = train_single_tasks(space, bundle, device=CPU, seed=0)
    looped = train_single_tasks(space, bundle, device=CPU, seed=0, batched=False)
    assert list(batched) == list(looped) == list(space.task_names)
    for task in space.task_names:
        a, b = batched[task], looped[task]
        assert a.tree == b.tree and a.cost == b.cost
        _assert_metrics_equal(a.val, b.val)
        _assert_metrics_equal(a.test, b.test)


def test_baselines_give_the_independent_trees_result(tmp_path: Path) -> None:
    space, bundle = _tiny(tmp_path, epochs=1)
    baselines = compute_baselines(space, bundle, device=CPU, seed=0)
    result = baselines.independent(space)
    tree = BranchingTree.independent(space.task_names, space.num_layers)
    assert result.tree == tree and result.cost == tree_cost(tree, space)
    assert result.test == baselines.metrics("test") and result.val == baselines.metrics("val")
    assert baselines.delta_m(result, space, "val") == 0.0
    assert result.seconds == pytest.approx(sum(r.seconds for r in baselines.single_task.values()))
    # what the study trained before: the same tree and cost (only the initial weights' draw differs)
    trained = train_tree(tree, space, bundle, device=CPU, seed=0)
    assert trained.tree == result.tree and trained.cost == result.cost
    assert trained.test.keys() == result.test.keys()
    with pytest.raises(ValueError, match="tasks"):
        baselines.independent(replace(space, tasks=space.tasks[:2]))


def test_baselines_are_cached_per_space_and_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space, bundle = _tiny(tmp_path, epochs=1)
    first = compute_baselines(space, bundle, device=CPU, seed=0)
    calls = []
    monkeypatch.setattr("mtnas.train._baselines.train_single_tasks", lambda *a, **k: calls.append(1))
    again = compute_baselines(space, bundle, device=CPU, seed=0)
    assert calls == [] and json.dumps(again.to_dict()) == json.dumps(first.to_dict())


def test_a_backbone_vmap_cannot_run_falls_back_to_one_network_at_a_time(tmp_path: Path, monkeypatch) -> None:
    space, bundle = _tiny(tmp_path, epochs=1)
    monkeypatch.setattr("mtnas.train._batched._check_stackable", lambda stack, inputs: "RuntimeError: no vmap")
    with pytest.warns(RuntimeWarning, match="one at a time"):
        results = train_single_tasks(space, bundle, device=CPU, seed=0)
    looped = train_single_tasks(space, bundle, device=CPU, seed=0, batched=False)
    for task in space.task_names:
        assert results[task].test == looped[task].test  # the very same runs


def test_forty_attribute_heads_run_as_one_stack(tmp_path: Path) -> None:
    space, bundle = _tiny(tmp_path, base="synth_attributes", epochs=1)
    stack = SingleTaskStack.from_space(space, seed=0)
    assert [len(g) for g in stack.head_groups] == [40]
    stack.eval()
    with torch.no_grad():
        out = stack(bundle.val.inputs[:5])
    assert list(out) == list(space.task_names) and all(y.shape == (5, 2) for y in out.values())
    for task in ("attr_00", "attr_39"):
        torch.manual_seed(0)
        net = BranchedNet.from_space(BranchingTree.all_shared((task,), space.num_layers), single_task_space(space, task))
        net.eval()
        with torch.no_grad():
            assert torch.allclose(out[task], net(bundle.val.inputs[:5])[task], atol=1e-5)
