"""A user's dataset's tensors are checked where they enter: every fault is one line naming the
split, the task and what to do (exit 2 from the CLI), never a torch traceback or a trained figure;
a matter of width (float64 images, int32 class indices) is converted with a note."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtnas.cli import main
from mtnas.data import DatasetBundle, DatasetError, DatasetNote, TaskData, TaskInfo, check_bundle
from mtnas.data.datasets import build_dataset, register_dataset
from tests.datasets._tiny_factory import isolate_plugins

N = 12
FLAT = (TaskInfo("c", "classification", 3), TaskInfo("r", "regression", 1), TaskInfo("m", "multilabel", 2))
DENSE = (TaskInfo("s", "dense_classification", 3), TaskInfo("d", "dense_regression", 1))


def _split(n: int = N, images: bool = False, **change: object) -> TaskData:
    g = torch.Generator().manual_seed(n)
    if images:
        targets = {"s": torch.randint(0, 3, (n, 4, 4), generator=g), "d": torch.rand(n, 1, 4, 4, generator=g)}
        inputs = torch.rand(n, 1, 4, 4, generator=g)
    else:
        targets = {"c": torch.arange(n) % 3, "r": torch.rand(n, 1, generator=g),
                   "m": torch.randint(0, 2, (n, 2), generator=g).float()}
        inputs = torch.rand(n, 6, generator=g)
    inputs = change.pop("inputs", inputs)
    return TaskData(inputs, {**targets, **change})  # type: ignore[arg-type]


def _bundle(split: str = "train", images: bool = False, **change: object) -> DatasetBundle:
    splits = {name: _split(images=images, **(change if name == split else {})) for name in ("train", "val", "test")}
    return DatasetBundle(**splits, tasks=DENSE if images else FLAT)


def _nan_inputs() -> torch.Tensor:
    x = torch.rand(N, 6)
    x[5, 2] = float("nan")
    return x


#: a fault -> (the bundle, what its one line says)
FAULTS: dict[str, tuple[Callable[[], DatasetBundle], list[str]]] = {
    "numpy inputs": (lambda: _bundle(inputs=np.zeros((N, 6), np.float32)),
                     ["the train split: inputs is a numpy.ndarray, not a torch tensor", "torch.as_tensor"]),
    "numpy targets": (lambda: _bundle("val", c=np.zeros(N, np.int64)),
                      ["the val split, task 'c': targets is a numpy.ndarray", "torch.as_tensor"]),
    "uint8 images": (lambda: _bundle(inputs=torch.zeros(N, 6, dtype=torch.uint8)),
                     ["the train split: inputs are torch.uint8", "x.float() / 255"]),
    "NaN inputs": (lambda: _bundle("test", inputs=_nan_inputs()),
                   ["the test split: inputs hold 1 NaN or infinite values (the first in sample 5)", "drop or repair"]),
    "inf inputs": (lambda: _bundle(inputs=torch.full((N, 6), float("inf"))), ["NaN or infinite values"]),
    "float class targets": (lambda: _bundle(c=(torch.arange(N) % 3).float()),
                            ["task 'c': targets are torch.float32; class indices are int64", "targets.long()"]),
    "a label beyond the classes": (lambda: _bundle("val", c=torch.full((N,), 3)),
                                   ["the val split, task 'c': targets hold the class 3", "takes 0..2", "num_outputs"]),
    "a negative label": (lambda: _bundle(c=torch.full((N,), -1)),
                         ["task 'c': targets hold the class -1", "-100 for an unlabelled sample"]),
    "a (N, 3) target of a 1-output head": (lambda: _bundle(r=torch.rand(N, 3)),
                                           ["task 'r': targets of shape (12, 3), expected (12, 1) for a regression "
                                            "task of 1 output", "reshape them"]),
    "a (N,) regression target": (lambda: _bundle(r=torch.rand(N)), ["shape (12,), expected (12, 1)"]),
    "a (N, 1) class target": (lambda: _bundle(c=torch.zeros(N, 1, dtype=torch.long)),
                              ["task 'c': targets of shape (12, 1), expected (12,)"]),
    "NaN regression targets": (lambda: _bundle(r=torch.full((N, 1), float("nan"))),
                               ["task 'r': targets hold 12 NaN or infinite values", "TaskData(masks=...)"]),
    "multilabel of 2": (lambda: _bundle(m=torch.full((N, 2), 2.0)), ["task 'm': targets hold values outside 0..1"]),
    "an empty train split": (lambda: _bundle(inputs=torch.zeros(0, 6), c=torch.zeros(0, dtype=torch.long),
                                             r=torch.zeros(0, 1), m=torch.zeros(0, 2)),
                             ["the train split is empty"]),
    "an empty val split": (lambda: _bundle("val", inputs=torch.zeros(0, 6), c=torch.zeros(0, dtype=torch.long),
                                           r=torch.zeros(0, 1), m=torch.zeros(0, 2)),
                           ["the val split is empty"]),
    "splits of other shapes": (lambda: _bundle("val", inputs=torch.rand(N, 5)),
                               ["the val split: inputs of shape (5,) per sample, the train split's are (6,)"]),
    "a dense target of another size": (lambda: _bundle(images=True, s=torch.zeros(N, 3, 3, dtype=torch.long)),
                                       ["task 's': targets of shape (12, 3, 3), expected (12, 4, 4)"]),
    "a dense label beyond the classes": (lambda: _bundle(images=True, s=torch.full((N, 4, 4), 7)),
                                         ["task 's': targets hold the class 7"]),
    "dense regression without its channel": (lambda: _bundle(images=True, d=torch.rand(N, 4, 4)),
                                             ["task 'd': targets of shape (12, 4, 4), expected (12, 1, 4, 4)"]),
    # a task with no labelled training sample (before: a NaN loss, or a KeyError deep in a training)
    "every class label -100": (lambda: _bundle(c=torch.full((N,), -100)),
                               ["the train split, task 'c': no sample is labelled (its targets are all -100), so the "
                                "task cannot be learnt", "leave it out of the space's tasks"]),
    "a mask all False": (lambda: _masked("train", "r", torch.zeros(N, dtype=torch.bool)),
                         ["the train split, task 'r': no sample is labelled (its mask is all False)"]),
    "the labelled samples all -100": (lambda: _masked("train", "c", torch.arange(N) < 4, c=torch.full((N,), -100)),
                                      ["task 'c': no sample is labelled (its labelled targets are all -100)"]),
    "every pixel -100": (lambda: _bundle(images=True, s=torch.full((N, 4, 4), -100)),
                         ["the train split, task 's': no sample is labelled"]),
}


def _masked(split: str, task: str, mask: torch.Tensor, **change: object) -> DatasetBundle:
    """``_bundle`` with ``mask`` as ``task``'s mask in ``split``."""
    bundle = _bundle(split, **change)
    data = getattr(bundle, split)
    return replace(bundle, **{split: TaskData(data.inputs, data.targets, {task: mask})})


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_faulty_tensor_is_one_line_naming_the_split_task_and_what_to_do(fault: str) -> None:
    make, expected = FAULTS[fault]
    with pytest.raises(DatasetError) as caught:
        check_bundle(make(), "dataset 'mine'")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("dataset 'mine': ")
    for part in expected:
        assert part in message, message


#: a width to convert -> (the bundle, what the note says, the tensor checked after)
CONVERTED: dict[str, tuple[Callable[[], DatasetBundle], str, Callable[[DatasetBundle], torch.Tensor]]] = {
    "float64 images": (lambda: _bundle(inputs=torch.rand(N, 6, dtype=torch.float64)),
                       "the train split: inputs of torch.float64 are converted to float32", lambda b: b.train.inputs),
    "int32 class targets": (lambda: _bundle("test", c=(torch.arange(N) % 3).int()),
                            "the test split, task 'c': targets of torch.int32 are converted to torch.int64",
                            lambda b: b.test.targets["c"]),
    "float64 regression targets": (lambda: _bundle(r=torch.rand(N, 1, dtype=torch.float64)),
                                   "task 'r': targets of torch.float64 are converted to torch.float32",
                                   lambda b: b.train.targets["r"]),
    "bool multilabel targets": (lambda: _bundle(m=torch.ones(N, 2, dtype=torch.bool)),
                                "task 'm': targets of torch.bool are converted", lambda b: b.train.targets["m"]),
}


@pytest.mark.parametrize("case", list(CONVERTED))
def test_a_matter_of_width_is_converted_with_a_note(case: str) -> None:
    make, note, tensor = CONVERTED[case]
    given = make()
    with pytest.warns(DatasetNote, match=note.replace("(", r"\(").replace(")", r"\)")):
        checked = check_bundle(given, "dataset 'mine'")
    assert tensor(checked).dtype in (torch.float32, torch.int64)
    assert torch.equal(tensor(checked), tensor(given).to(tensor(checked).dtype))


#: a split without labels of a task, outside train -> its note (the task is not refused: it trains)
UNLABELLED_NOTES: dict[str, tuple[Callable[[], DatasetBundle], str]] = {
    "val labels all -100": (lambda: _bundle("val", c=torch.full((N,), -100)),
                            "dataset 'mine': the val split, task 'c': no sample is labelled (its targets are all -100): "
                            "its val metrics read 0 for every tree, and delta-m on val counts the task as unchanged; "
                            "label some of its val samples"),
    "a test mask all False": (lambda: _masked("test", "m", torch.zeros(N, dtype=torch.bool)),
                              "dataset 'mine': the test split, task 'm': no sample is labelled (its mask is all "
                              "False): its test metrics read 0 for every tree"),
}


@pytest.mark.parametrize("case", list(UNLABELLED_NOTES))
def test_a_split_without_labels_of_a_task_outside_train_gets_a_note(case: str) -> None:
    """Before: delta-m left the task out without a word (or a KeyError for a mask all False)."""
    make, note = UNLABELLED_NOTES[case]
    given = make()
    with pytest.warns(DatasetNote) as caught:
        checked = check_bundle(given, "dataset 'mine'")
    assert [str(w.message) for w in caught if note in str(w.message)], [str(w.message) for w in caught]
    assert torch.equal(checked.val.targets["c"], given.val.targets["c"])


def test_unlabelled_samples_and_the_ignore_index_are_not_faults() -> None:
    labels = torch.arange(N) % 3
    labels[0] = -100
    bad = torch.full((N, 1), float("nan"))
    bad[:4] = 0.5
    masks = {"r": torch.arange(N) < 4}  # the samples not labelled for r: their NaNs are never read
    split = TaskData(torch.rand(N, 6), {"c": labels, "r": bad, "m": torch.zeros(N, 2)}, masks)
    checked = check_bundle(DatasetBundle(split, split, split, FLAT), "dataset 'mine'")
    assert torch.equal(checked.train.targets["c"], labels)


def _splits(val: TaskData, tasks: tuple[TaskInfo, ...] = (TaskInfo("a", "regression", 1),)) -> DatasetBundle:
    """A bundle whose val split is ``val`` (train and test sound): its faults name the val split."""
    good = TaskData(torch.rand(4, 2), {"a": torch.rand(4, 1)})
    return DatasetBundle(good, val, good, tasks)


@pytest.mark.parametrize("build, expected", [
    (lambda: _splits(TaskData(torch.rand(4, 2), {"a": torch.zeros(5, 1)})),
     "the val split, task 'a': targets have 5 rows, the inputs 4; give one target per input sample"),
    (lambda: _splits(TaskData(torch.rand(4, 2), {"a": 3})),
     "the val split, task 'a': targets is a int, not a tensor of one row per sample"),
    (lambda: _splits(TaskData(torch.rand(4, 2), {"a": {"x": [1, 2, 3, 4]}})),  # before: "has 1 rows"
     "the val split, task 'a': targets is a dict, not a tensor of one row per sample; convert it with torch.as_tensor"),
    (lambda: _splits(TaskData(torch.rand(4, 2), {"a": torch.rand(4, 1)}, {"a": torch.ones(5, dtype=torch.bool)})),
     "the val split, task 'a': its mask is torch.bool of shape (5,); give a bool tensor of shape (4,), True where"),
    (lambda: _splits(TaskData(torch.rand(4, 2), {"a": torch.rand(4, 1)}, {"a": torch.ones(4)})),
     "the val split, task 'a': its mask is torch.float32 of shape (4,); give a bool tensor of shape (4,)"),
    (lambda: _splits(TaskData(torch.rand(4, 2), {"a": torch.rand(4, 1)}, {"a": [True] * 4})),
     "the val split, task 'a': its mask is list; give a bool tensor of shape (4,)"),
    (lambda: _splits(TaskData(torch.rand(4, 2), {"a": torch.rand(4, 1)}, {"b": torch.ones(4, dtype=torch.bool)})),
     "the val split: masks['b']: no such task among the targets ['a']"),
    (lambda: TaskData(torch.rand(4, 2), [torch.zeros(4)]), "TaskData: targets is a list; give a mapping"),
    (lambda: TaskInfo("a", "classification", 2.0), "num_outputs must be a whole number >= 1, got 2.0"),
    (lambda: TaskInfo("a", "segmentation", 2), "unknown kind 'segmentation'"),
    (lambda: DatasetBundle(*(3 * [TaskData(torch.rand(2, 2), {})]), tasks=(TaskInfo("a", "regression", 1),)),
     "the train split lacks targets for tasks ['a']"),
], ids=["lengths", "not a tensor", "a dict", "a mask's length", "a mask's dtype", "a mask as a list",
        "a mask of no task", "targets not a mapping", "float outputs", "unknown kind", "missing targets"])
def test_a_bundle_that_cannot_be_built_is_a_user_error(build: Callable[[], object], expected: str) -> None:
    with pytest.raises(DatasetError, match=re.escape(expected)):
        build()


def test_the_cli_answers_a_faulty_dataset_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capfd: pytest.CaptureFixture) -> None:
    """An empty train split used to train and report +14.55%; a (N, 3) target for a 1-output head trained."""
    isolate_plugins(monkeypatch)

    @register_dataset("faulty")
    def faulty(*, seed: int = 0, fault: str = "none") -> DatasetBundle:
        n = 0 if fault == "empty" else N
        x = torch.rand(n, 6, dtype=torch.float64 if fault == "float64" else torch.float32)
        return DatasetBundle(*(3 * [TaskData(x, {"r": torch.rand(n, 3 if fault == "shape" else 1)})]),
                             tasks=(TaskInfo("r", "regression", 1),))

    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump({"dataset": {"name": "faulty", "args": {"fault": "shape"}},
                                     "backbone": {"name": "mlp", "layers": [{"width": 4}]}, "tasks": ["r"],
                                     "training": {"epochs": 1}}))
    for fault, expected in (("shape", "task 'r': targets of shape (12, 3), expected (12, 1)"),
                            ("empty", "the train split is empty")):
        capfd.readouterr()
        assert main(["train", str(space), "--set", f"dataset.args.fault={fault}", "--quiet"]) == 2
        err = capfd.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mtnas: error: dataset 'faulty': ") and expected in err, err
    assert build_dataset("faulty", {}).train.inputs.shape == (N, 6)
    capfd.readouterr()
    assert main(["train", str(space), "--set", "dataset.args.fault=float64", "--quiet", "--json"]) == 0
    err = capfd.readouterr().err
    assert ("mtnas: note: dataset 'faulty': the train split: inputs of torch.float64 are converted to float32, what "
            "mtnas trains in\n") in err, err
