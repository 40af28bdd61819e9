"""BranchedNet: one block per tree node, computed once; shapes; parameter ordering; contract over spaces."""

from __future__ import annotations

import pytest
import torch

from mtnas.model import BranchedNet, count_params, tree_cost
from mtnas.space import BUILTIN_DIR, load_resolved, space_from_dict
from mtnas.tree import Architecture, BranchingTree
from tests._spaces import load_builtin

BUILTINS = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def _count_block_calls(model: BranchedNet) -> list[int]:
    calls = []
    for blocks in model.layers:
        for block in blocks:
            block.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.fixture(scope="module")
def gratings():
    return load_resolved("digit_gratings")


def test_each_node_is_computed_once(gratings) -> None:
    space, bundle = gratings
    tree = BranchingTree.from_split_points(
        space.task_names, space.num_layers, {1: bundle.planted_groups, 3: [(t,) for t in space.task_names]}
    )
    model = BranchedNet.from_space(tree, space)
    calls = _count_block_calls(model)
    out = model(bundle.train.inputs[:5])
    assert len(calls) == tree.num_nodes == 1 + 2 + 2 + 6
    assert set(out) == set(space.task_names)
    assert out["digit"].shape == (5, 10) and out["orientation"].shape == (5, 4)


def test_tasks_in_one_group_read_the_same_features(gratings) -> None:
    space, bundle = gratings
    tree = BranchingTree.all_shared(space.task_names, space.num_layers)
    model = BranchedNet.from_space(tree, space).eval()
    feats = {}
    for task, head in model.heads.items():
        head.register_forward_hook(lambda m, inp, out, task=task: feats.__setitem__(task, inp[0]))
    model(bundle.val.inputs[:3])
    assert all(torch.equal(feats["digit"], f) for f in feats.values())


def test_params_grow_from_all_shared_to_independent(gratings) -> None:
    space, bundle = gratings
    t, n = space.task_names, space.num_layers
    shared = tree_cost(BranchingTree.all_shared(t, n), space)
    split = tree_cost(BranchingTree.from_split_points(t, n, {2: bundle.planted_groups}), space)
    indep = tree_cost(BranchingTree.independent(t, n), space)
    assert shared.params < split.params < indep.params
    assert shared.flops < split.flops < indep.flops


@pytest.mark.parametrize("name", BUILTINS)
def test_every_space_builds_runs_and_rebuilds_from_its_arch_file(name: str, tmp_path) -> None:
    space, bundle = load_builtin(name)
    tree = BranchingTree.from_split_points(
        space.task_names, space.num_layers, {space.num_layers - 1: [(task,) for task in space.task_names]}
    )
    model = BranchedNet.from_space(tree, space)
    out = model(bundle.train.inputs[:4])
    for task in space.tasks:
        assert torch.isfinite(out[task.name]).all()
        target = bundle.train.targets[task.name][:4]
        if task.kind == "dense_classification":
            assert out[task.name].shape == (4, task.num_outputs, *target.shape[-2:])
        else:
            assert out[task.name].shape[:2] == (4, task.num_outputs)
    path = Architecture(tree, space.to_dict()).save(tmp_path / "arch.json")
    arch = Architecture.load(path)
    rebuilt = BranchedNet.from_space(arch.tree, space_from_dict(arch.space))
    assert count_params(rebuilt) == count_params(model)
    assert [n for n, _ in rebuilt.named_parameters()] == [n for n, _ in model.named_parameters()]
