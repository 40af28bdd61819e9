"""Partial labels: samples that label only some tasks train and evaluate on what they label."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mtnas.core import MtnasError
from mtnas.data import TaskData
from mtnas.data.datasets import make_synth_scenes
from mtnas.model import BranchedNet
from mtnas.space import load_resolved, space_from_dict
from mtnas.train import evaluate, task_losses, train_model
from mtnas.tree import BranchingTree

SPACE = {
    "dataset": {"name": "synth_scenes", "args": {"n_train": 48, "n_val": 24, "n_test": 24, "size": 16,
                                                  "drop_labels": 0.5}},
    "backbone": {"name": "conv", "layers": [{"channels": 4}, {"channels": 4, "stride": 2}]},
    "tasks": ["segmentation", "depth", "count"],
    "training": {"epochs": 1, "batch_size": 16},
}


@pytest.fixture(scope="module")
def partial():
    return load_resolved(space_from_dict(SPACE))


def test_dropped_labels_are_masked_at_the_rate_asked_and_every_scene_keeps_one() -> None:
    bundle = make_synth_scenes(n_train=400, n_val=8, n_test=8, size=8, drop_labels=0.3, seed=1)
    masks = torch.stack([bundle.train.masks[t.name] for t in bundle.tasks], dim=1)  # (N, T)
    assert masks.dtype == torch.bool and masks.shape == (400, 5)
    assert 0.62 < masks.float().mean() < 0.78  # about 70% kept (plus the rescued scenes)
    assert bool(masks.any(dim=1).all())
    assert make_synth_scenes(n_train=8, n_val=8, n_test=8, size=8).train.masks == {}  # none dropped: no masks
    with pytest.raises(MtnasError, match="drop_labels must be below 1"):
        make_synth_scenes(drop_labels=1.0)


def test_masks_follow_selection_and_are_validated() -> None:
    data = TaskData(torch.zeros(4, 2), {"a": torch.arange(4)}, {"a": torch.tensor([True, False, True, False])})
    assert data.select(slice(1, 3)).masks["a"].tolist() == [False, True]
    assert data.only(["a"]).labelled("a") is not None and TaskData(torch.zeros(4, 2), {"a": torch.arange(4)}).labelled("a") is None
    assert data.fault() is None
    # checked where the split enters a bundle, which names it (tests/datasets/test_bundle_checks.py)
    assert "give a bool tensor of shape (4,)" in TaskData(torch.zeros(4, 2), {"a": torch.arange(4)},
                                                          {"a": torch.ones(4)}).fault()
    assert "no such task" in TaskData(torch.zeros(4, 2), {"a": torch.arange(4)},
                                      {"b": torch.ones(4, dtype=torch.bool)}).fault()


def test_masked_loss_is_the_loss_over_labelled_samples_and_unlabelled_ones_get_no_gradient(partial) -> None:
    space, bundle = partial
    torch.manual_seed(0)
    model = BranchedNet.from_space(BranchingTree.all_shared(space.task_names, space.num_layers), space).eval()
    batch = bundle.train.select(slice(0, 16))  # eval mode: batch norm does not mix the samples
    inputs = batch.inputs.clone().requires_grad_(True)
    losses = task_losses(model(inputs), batch.targets, space, batch.masks)
    for task in space.task_names:
        mask = batch.masks[task]
        subset = task_losses({task: model(batch.inputs[mask])[task]}, {task: batch.targets[task][mask]}, space)
        assert losses[task].item() == pytest.approx(subset[task].item(), rel=1e-5)
    # a sample's input gets gradient only through the tasks it labels
    (grad,) = torch.autograd.grad(losses["count"], inputs)
    unlabelled = ~batch.masks["count"]
    assert float(grad[unlabelled].abs().sum()) == 0.0 and float(grad[~unlabelled].abs().sum()) > 0


def test_a_batch_without_labels_of_a_task_gives_zero_not_nan(partial) -> None:
    space, bundle = partial
    model = BranchedNet.from_space(BranchingTree.independent(space.task_names, space.num_layers), space)
    batch = bundle.train.select(slice(0, 4))
    none = replace(batch, masks={**batch.masks, "depth": torch.zeros(4, dtype=torch.bool)})
    losses = task_losses(model(none.inputs), none.targets, space, none.masks)
    assert losses["depth"].item() == 0.0
    sum(losses.values()).backward()  # every head takes part (DDP needs that), depth's with zero gradient
    assert all(p.grad is not None for p in model.heads["depth"].parameters())
    assert all(float(p.grad.abs().sum()) == 0.0 for p in model.heads["depth"].parameters())


def test_a_split_without_labels_of_a_task_reads_0_for_it_as_ignored_targets_do(partial) -> None:
    """Before: the task was missing from the metrics, and delta-m ended in a KeyError."""
    space, bundle = partial
    model = BranchedNet.from_space(BranchingTree.all_shared(space.task_names, space.num_layers), space)
    none = replace(bundle.val, masks={**bundle.val.masks, "depth": torch.zeros(len(bundle.val), dtype=torch.bool)})
    metrics = evaluate(model, none, space)
    assert set(metrics) == set(space.task_names) and set(metrics["depth"].values()) == {0.0}
    assert metrics["count"] == evaluate(model, bundle.val, space)["count"]


def test_metrics_count_only_labelled_samples(partial) -> None:
    space, bundle = partial
    model = BranchedNet.from_space(BranchingTree.all_shared(space.task_names, space.num_layers), space)
    full = evaluate(model, bundle.val, space)
    for task in space.task_names:
        mask = bundle.val.masks[task]
        alone = evaluate(model, bundle.val.select(mask), space)  # all tasks' targets, the rows of this one
        without_masks = TaskData(bundle.val.select(mask).inputs, bundle.val.select(mask).targets)
        assert full[task] == pytest.approx(evaluate(model, without_masks, space)[task])
        assert alone[task] == full[task]


def test_training_with_partial_labels_runs_to_finite_metrics(partial) -> None:
    space, bundle = partial
    model = BranchedNet.from_space(BranchingTree.all_shared(space.task_names, space.num_layers), space)
    result = train_model(model, space, bundle, device=torch.device("cpu"), seed=0)
    assert all(torch.isfinite(torch.tensor(v)) for metrics in result.test.values() for v in metrics.values())
    assert all(torch.isfinite(torch.tensor(v)) for v in result.history[0].values())


def test_a_search_on_partial_labels_finds_a_tree(partial) -> None:
    from mtnas.search import search_tree

    space, bundle = partial
    space = replace(space, search=replace(space.search, epochs=2, warmup_epochs=1))
    result = search_tree(space, bundle, seed=0)
    assert set(result.tree.tasks) == set(space.task_names)
