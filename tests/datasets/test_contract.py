"""Contract tests run over every registered dataset: shapes, dtypes, ranges, determinism."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mtnas.core import MtnasError
from mtnas.data import TASK_KINDS, DatasetBundle, TaskInfo
from mtnas.data.datasets import DATASETS, build_dataset, list_datasets

SMALL = {"n_train": 12, "n_val": 5, "n_test": 7}
#: Real benchmarks read a folder (``root``) instead of generating samples; test_real_loaders.py
#: runs them on tiny fakes of their files.
ON_DISK = ("celeba", "cityscapes", "nyuv2")
GENERATED = [name for name in list_datasets() if name not in ON_DISK]


def _classes(task: TaskInfo, target: torch.Tensor) -> None:
    assert target.dtype == torch.int64
    assert int(target.min()) >= 0 and int(target.max()) < task.num_outputs


def _floats(target: torch.Tensor) -> None:
    assert target.dtype.is_floating_point
    assert not torch.isnan(target).any()


def _check_classification(task: TaskInfo, target: torch.Tensor, inputs: torch.Tensor) -> None:
    assert target.shape == (len(inputs),)
    _classes(task, target)


def _check_multilabel(task: TaskInfo, target: torch.Tensor, inputs: torch.Tensor) -> None:
    assert target.shape == (len(inputs), task.num_outputs)
    _floats(target)
    assert set(target.unique().tolist()) <= {0.0, 1.0}


def _check_regression(task: TaskInfo, target: torch.Tensor, inputs: torch.Tensor) -> None:
    assert target.shape == (len(inputs), task.num_outputs)
    _floats(target)


def _check_dense_classification(task: TaskInfo, target: torch.Tensor, inputs: torch.Tensor) -> None:
    assert target.shape == (len(inputs), *inputs.shape[-2:])
    _classes(task, target)


def _check_dense_regression(task: TaskInfo, target: torch.Tensor, inputs: torch.Tensor) -> None:
    assert target.shape == (len(inputs), task.num_outputs, *inputs.shape[-2:])
    _floats(target)


CHECKS: dict[str, Callable[[TaskInfo, torch.Tensor, torch.Tensor], None]] = {
    "classification": _check_classification,
    "multilabel": _check_multilabel,
    "regression": _check_regression,
    "dense_classification": _check_dense_classification,
    "dense_regression": _check_dense_regression,
}


def test_every_task_kind_has_a_check() -> None:
    assert set(CHECKS) == set(TASK_KINDS)


def test_the_built_ins_are_registered() -> None:
    assert list_datasets() == ["celeba", "cityscapes", "digit_grating_kinds", "digit_grating_levels", "digit_gratings",
                               "multi_digit_gratings", "multi_digits", "nyuv2", "synth_attributes", "synth_scenes"]


@pytest.mark.parametrize("name", GENERATED)
def test_targets_match_their_task_kind(name: str) -> None:
    bundle = build_dataset(name, {**SMALL, "seed": 3})
    assert isinstance(bundle, DatasetBundle)
    for split, n in (("train", 12), ("val", 5), ("test", 7)):
        data = getattr(bundle, split)
        assert len(data) == n
        assert data.inputs.dtype == torch.float32
        assert tuple(data.inputs.shape[1:]) == bundle.input_shape
        assert not torch.isnan(data.inputs).any()
        assert set(data.targets) == {t.name for t in bundle.tasks}
        for task in bundle.tasks:
            CHECKS[task.kind](task, data.targets[task.name], data.inputs)


@pytest.mark.parametrize("name", GENERATED)
def test_planted_groups_partition_the_tasks(name: str) -> None:
    bundle = build_dataset(name, SMALL)
    if bundle.planted_groups is not None:
        grouped = [t for group in bundle.planted_groups for t in group]
        assert sorted(grouped) == sorted(t.name for t in bundle.tasks)


def _equal(a: DatasetBundle, b: DatasetBundle) -> bool:
    return all(
        torch.equal(getattr(a, s).inputs, getattr(b, s).inputs)
        and all(torch.equal(getattr(a, s).targets[k], getattr(b, s).targets[k]) for k in getattr(a, s).targets)
        for s in ("train", "val", "test")
    )


@pytest.mark.parametrize("name", GENERATED)
def test_same_seed_same_data_other_seed_other_data(name: str) -> None:
    first = build_dataset(name, {**SMALL, "seed": 1})
    assert _equal(first, build_dataset(name, {**SMALL, "seed": 1}))
    other = build_dataset(name, {**SMALL, "seed": 2})
    for split in ("train", "val", "test"):
        assert not torch.equal(getattr(first, split).inputs, getattr(other, split).inputs)


@pytest.mark.parametrize("name", GENERATED)
def test_more_training_data_leaves_val_and_test_unchanged(name: str) -> None:
    small = build_dataset(name, SMALL)
    large = build_dataset(name, {**SMALL, "n_train": 30})
    assert torch.equal(small.val.inputs, large.val.inputs)
    assert torch.equal(small.test.inputs, large.test.inputs)


@pytest.mark.parametrize("name", GENERATED)
def test_unknown_argument_is_named_with_the_valid_ones(name: str) -> None:
    with pytest.raises(MtnasError) as err:
        build_dataset(name, {"n_trian": 10})
    message = str(err.value)
    assert "'n_trian'" in message and "did you mean 'n_train'?" in message
    valid = message.split("valid: ")[1].split(", ")
    assert {"n_train", "n_val", "n_test", "seed"} <= set(valid)


@pytest.mark.parametrize("name", GENERATED)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"n_train": 0}, "n_train must be >= 1, got 0"),
        ({"n_val": 2.5}, "n_val must be an integer, got 2.5"),
        ({"n_test": True}, "n_test must be an integer, got True"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"seed": "0"}, "seed must be an integer, got '0'"),
    ],
)
def test_bad_values_are_user_errors(name: str, args: dict, expected: str) -> None:
    with pytest.raises(MtnasError, match=expected) as err:
        build_dataset(name, {**SMALL, **args})
    assert repr(name) in str(err.value)


def test_unknown_name_lists_the_valid_ones_and_the_closest() -> None:
    with pytest.raises(MtnasError) as err:
        build_dataset("digit_grating", {})
    message = str(err.value)
    assert "unknown dataset 'digit_grating' (did you mean 'digit_gratings'?)" in message
    assert ("valid: celeba, cityscapes, digit_grating_kinds, digit_grating_levels, digit_gratings, multi_digit_gratings, "
            "multi_digits, nyuv2, synth_attributes, synth_scenes") in message


@pytest.mark.parametrize(("name", "factory"), [(None, None), ("multi_digits", "tests.datasets._tiny_factory:make")])
def test_exactly_one_of_name_and_factory(name: str | None, factory: str | None) -> None:
    with pytest.raises(MtnasError, match="exactly one of a name .* or a factory"):
        build_dataset(name, {}, factory=factory)


def test_registry_entries_take_keyword_arguments_only() -> None:
    for name in list_datasets():
        with pytest.raises(TypeError):
            DATASETS.get(name)(10)
