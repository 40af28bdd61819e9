"""A dataset's tensors, checked once where they enter mtnas (``build_dataset``).

A dataset function of the user's own can hand over anything: numpy arrays, float64 images, int32
class indices, labels beyond the head or below zero, NaN inputs, targets of another shape than
the task's, an empty split. Left alone, each ends in a torch traceback deep in a training, or
worse, trains and reports a figure. :func:`check_bundle` reads every split once and turns each
such fault into one line naming the dataset, the split, the task and what to do.

What is only a matter of width is made right, with a :class:`DatasetNote` saying so: floating
inputs or real-valued targets of another precision (float64 images) become float32, and class
indices of another integer type (int32) become int64. Everything else is refused.

Per task kind (``TASK_KINDS``), :data:`TARGET_RULES` says what a target must be: its type,
its shape per sample (from the task's ``num_outputs`` and the inputs' image size) and its values,
checked on the samples labelled for the task (``TaskData.masks``).

Rows come first, where a split enters its ``DatasetBundle`` (``TaskData.fault``): every target and
mask one row per sample, masks bool, each naming a task; the bundle's error names the split.

A task needs labels: one with no labelled sample in the train split (every class target
``IGNORE_INDEX``, or its mask all False) cannot be learnt and is refused; in the val or test split
it gets a note, as its metrics there read 0 for every tree and delta-m on that split counts it as
unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import torch

from mtnas.core import MtnasWarning
from mtnas.data._bundle import DatasetBundle, DatasetError, TaskData, TaskInfo

__all__ = ["IGNORE_INDEX", "SPLITS", "TARGET_RULES", "DatasetNote", "TargetRule", "check_bundle"]

#: The splits of a bundle, in order.
SPLITS = ("train", "val", "test")
#: A class target that marks an unlabelled sample or pixel (``torch.nn.functional.cross_entropy``'s).
IGNORE_INDEX = -100


class DatasetNote(MtnasWarning):
    """A dataset's tensor was converted to what mtnas trains on (float32 inputs, int64 classes)."""

    label = "note"


@dataclass(frozen=True)
class TargetRule:
    """What the targets of one task kind must be.

    Attributes:
        classes: class indices (int64), else real values (float32).
        shape: the shape of one sample's target, from the task and the shape of one input.
        values: the fault of the labelled targets' values in words, or None when they are sound.
    """

    classes: bool
    shape: Callable[[TaskInfo, tuple[int, ...]], tuple[int, ...]]
    values: Callable[[torch.Tensor, TaskInfo], str | None]


def _class_values(targets: torch.Tensor, task: TaskInfo) -> str | None:
    bad = ((targets < 0) & (targets != IGNORE_INDEX)) | (targets >= task.num_outputs)
    if not bool(bad.any()):
        return None
    value = int(targets[bad].flatten()[0])
    return (f"hold the class {value} ({int(bad.sum())} such values); a {task.kind} task of {task.num_outputs} "
            f"classes takes 0..{task.num_outputs - 1}, and {IGNORE_INDEX} for an unlabelled sample; fix the labels "
            "or num_outputs")


def _finite_values(targets: torch.Tensor, task: TaskInfo) -> str | None:
    bad = ~torch.isfinite(targets)
    if not bool(bad.any()):
        return None
    return (f"hold {int(bad.sum())} NaN or infinite values; drop those samples, or mark them unlabelled with "
            "TaskData(masks=...)")


def _label_values(targets: torch.Tensor, task: TaskInfo) -> str | None:
    fault = _finite_values(targets, task)
    if fault is None and bool(((targets < 0) | (targets > 1)).any()):
        fault = "hold values outside 0..1; a multilabel target is 0 or 1 per label"
    return fault


def _image_size(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(input_shape[-2:]) if len(input_shape) == 3 else (-1, -1)  # (-1, -1): no image, never matched


#: task kind -> what its targets must be (the README's "Targets per kind")
TARGET_RULES: Mapping[str, TargetRule] = MappingProxyType({
    "classification": TargetRule(True, lambda task, x: (), _class_values),
    "multilabel": TargetRule(False, lambda task, x: (task.num_outputs,), _label_values),
    "regression": TargetRule(False, lambda task, x: (task.num_outputs,), _finite_values),
    "dense_classification": TargetRule(True, lambda task, x: _image_size(x), _class_values),
    "dense_regression": TargetRule(False, lambda task, x: (task.num_outputs, *_image_size(x)), _finite_values),
})


def check_bundle(bundle: DatasetBundle, what: str) -> DatasetBundle:
    """``bundle`` with every split checked (and widths converted, each with a :class:`DatasetNote`).

    Args:
        bundle: what a dataset function returned.
        what: the dataset as messages name it, e.g. "dataset 'my_dataset'".

    Raises:
        DatasetError: the first fault, in one line naming the split, the task and what to do.
    """
    shape = None
    splits = {}
    for name in SPLITS:
        split = getattr(bundle, name)
        where = f"{what}: the {name} split"
        inputs = _inputs(split.inputs, where)
        if shape is not None and tuple(inputs.shape[1:]) != shape:
            raise DatasetError(f"{where}: inputs of shape {tuple(inputs.shape[1:])} per sample, the train split's are "
                               f"{shape}; give every split samples of one shape")
        shape = tuple(inputs.shape[1:])
        targets = {task.name: _targets(split, task, shape, f"{where}, task {task.name!r}") for task in bundle.tasks}
        for task in bundle.tasks:
            _check_labelled(targets[task.name], split.masks.get(task.name), task, name, f"{where}, task {task.name!r}")
        splits[name] = TaskData(inputs, {**split.targets, **targets}, split.masks)
    return replace(bundle, **splits)


def _check_labelled(targets: torch.Tensor, mask: torch.Tensor | None, task: TaskInfo, split: str, where: str) -> None:
    """Refuse a task with no labelled sample in the train split; note one in val or test."""
    labelled = targets if mask is None else targets[mask]
    if len(labelled) and TARGET_RULES[task.kind].classes:
        labelled = labelled[(labelled != IGNORE_INDEX).reshape(len(labelled), -1).any(1)]
    if len(labelled):
        return
    how = ("its mask is all False" if mask is not None and not bool(mask.any())
           else f"its {'labelled ' if mask is not None else ''}targets are all {IGNORE_INDEX}")
    if split == "train":
        raise DatasetError(f"{where}: no sample is labelled ({how}), so the task cannot be learnt; label some of its "
                           "training samples, or leave it out of the space's tasks")
    warnings.warn(f"{where}: no sample is labelled ({how}): its {split} metrics read 0 for every tree, and delta-m "
                  f"on {split} counts the task as unchanged; label some of its {split} samples", DatasetNote,
                  stacklevel=3)


def _tensor(value: object, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
        raise DatasetError(f"{where} is a {kind}, not a torch tensor; convert it with torch.as_tensor(...)")
    return value


def _inputs(value: object, where: str) -> torch.Tensor:
    inputs = _tensor(value, f"{where}: inputs")
    if inputs.ndim >= 1 and len(inputs) == 0:
        raise DatasetError(f"{where} is empty; a dataset needs samples in train, val and test")
    if inputs.ndim < 2:
        raise DatasetError(f"{where}: inputs of shape {tuple(inputs.shape)}; give (N, C, H, W) images or (N, F) features")
    if not inputs.is_floating_point():
        raise DatasetError(f"{where}: inputs are {inputs.dtype}; give floating-point values (images as floats, "
                           "e.g. x.float() / 255)")
    if inputs.dtype != torch.float32:
        warnings.warn(f"{where}: inputs of {inputs.dtype} are converted to float32, what mtnas trains in",
                      DatasetNote, stacklevel=2)
        inputs = inputs.float()
    bad = ~torch.isfinite(inputs)
    if bool(bad.any()):
        row = int(bad.reshape(len(inputs), -1).any(1).nonzero()[0, 0])
        raise DatasetError(f"{where}: inputs hold {int(bad.sum())} NaN or infinite values (the first in sample {row}); "
                           "drop or repair those samples")
    return inputs


def _targets(split: TaskData, task: TaskInfo, input_shape: tuple[int, ...], where: str) -> torch.Tensor:
    rule = TARGET_RULES[task.kind]
    targets = _tensor(split.targets[task.name], f"{where}: targets")
    expected = (len(split.inputs), *rule.shape(task, input_shape))
    if tuple(targets.shape) != expected:
        raise DatasetError(f"{where}: targets of shape {tuple(targets.shape)}, expected {expected} for a {task.kind} "
                           f"task of {task.num_outputs} output{'s' if task.num_outputs != 1 else ''} "
                           f"({'images ' + str(input_shape) if len(input_shape) == 3 else 'flat inputs'}); reshape "
                           "them, or declare the task's num_outputs to match")
    targets = _converted(targets, rule, where)
    mask = split.masks.get(task.name)
    fault = rule.values(targets if mask is None else targets[mask], task)
    if fault is not None:
        raise DatasetError(f"{where}: targets {fault}")
    return targets


def _converted(targets: torch.Tensor, rule: TargetRule, where: str) -> torch.Tensor:
    """``targets`` as int64 class indices or float32 values: a wider or narrower type converted with
    a note, class indices given as floats (or bools) refused."""
    wanted = torch.int64 if rule.classes else torch.float32
    if targets.dtype == wanted:
        return targets
    if rule.classes and (targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool):
        raise DatasetError(f"{where}: targets are {targets.dtype}; class indices are int64 (targets.long() if they "
                           "are whole numbers)")
    if targets.is_complex():
        raise DatasetError(f"{where}: targets are {targets.dtype}; give real values (float32)")
    warnings.warn(f"{where}: targets of {targets.dtype} are converted to {wanted}, what mtnas trains on",
                  DatasetNote, stacklevel=2)
    return targets.to(wanted)
