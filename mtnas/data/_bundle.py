"""Multi-task data held as tensors: task descriptions, one split, and a dataset's three splits.

Built-in datasets are small, so a split is a pair of resident tensors (inputs, per-task targets)
that can live on the training device; no DataLoader is needed to feed it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from mtnas.core import MtnasError
from mtnas.data._kinds import TASK_KINDS

__all__ = ["TASK_KINDS", "DatasetBundle", "DatasetError", "TaskData", "TaskInfo"]


class DatasetError(MtnasError, ValueError):
    """A dataset's tasks, splits or tensors are not what mtnas can train on; the message says what
    to change. A user error (one line from the CLI), and a ``ValueError`` as before."""


@dataclass(frozen=True)
class TaskInfo:
    """What a dataset says about one of its tasks.

    Attributes:
        name: the key of this task's targets.
        kind: one of ``TASK_KINDS``.
        num_outputs: classes for (dense) classification, labels for multilabel, channels for
            (dense) regression.
        description: one line for humans.
    """

    name: str
    kind: str
    num_outputs: int
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise DatasetError(f"TaskInfo: a task's name is text, got {self.name!r}")
        if self.kind not in TASK_KINDS:
            raise DatasetError(f"task {self.name!r}: unknown kind {self.kind!r}; valid: {', '.join(TASK_KINDS)}")
        if isinstance(self.num_outputs, bool) or not isinstance(self.num_outputs, int) or self.num_outputs < 1:
            raise DatasetError(f"task {self.name!r}: num_outputs must be a whole number >= 1, got {self.num_outputs!r}")


@dataclass(frozen=True)
class TaskData:
    """One split: ``inputs`` of shape (N, ...) and ``targets[task]`` of shape (N, ...).

    ``masks[task]`` (bool, (N,)) marks the samples that carry a label of ``task`` (partial
    labels); a task without a mask is labelled on every sample. Losses and metrics use only the
    labelled samples of each task.

    Its rows are checked where it enters a ``DatasetBundle`` (:meth:`fault`), which knows the
    split's name and so can say which split is wrong.
    """

    inputs: torch.Tensor
    targets: Mapping[str, torch.Tensor]
    masks: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in ("targets", "masks"):
            value = getattr(self, what)
            if not isinstance(value, Mapping):
                raise DatasetError(f"TaskData: {what} is a {type(value).__name__}; give a mapping of task name -> "
                                   "tensor")
            object.__setattr__(self, what, MappingProxyType(dict(value)))

    def fault(self) -> str | None:
        """What makes this split unusable, in words (a value that is not one row per sample, a
        mask that is not bool of shape (N,) or names no task), or None when its rows are sound."""
        n = _rows(self.inputs)
        if n is None:
            return f"inputs is a {_kind(self.inputs)}, not a tensor of one row per sample"
        for name, t in self.targets.items():
            rows = _rows(t)
            if rows is None:
                return (f"task {name!r}: targets is a {_kind(t)}, not a tensor of one row per sample; convert it "
                        "with torch.as_tensor(...)")
            if rows != n:
                return (f"task {name!r}: targets have {rows} rows, the inputs {n}; give one target per input "
                        "sample, in the same order")
        for name, m in self.masks.items():
            if name not in self.targets:
                return f"masks[{name!r}]: no such task among the targets {sorted(self.targets)}"
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or tuple(m.shape) != (n,):
                shape = getattr(m, "shape", None)
                got = _kind(m) if shape is None else f"{getattr(m, 'dtype', _kind(m))} of shape {tuple(shape)}"
                return (f"task {name!r}: its mask is {got}; give a bool tensor of shape ({n},), True where the sample "
                        "is labelled")
        return None

    def __len__(self) -> int:
        return len(self.inputs)

    def select(self, index: torch.Tensor | slice) -> TaskData:
        """Rows ``index`` of every tensor."""
        return TaskData(self.inputs[index], {k: v[index] for k, v in self.targets.items()},
                        {k: m[index] for k, m in self.masks.items()})

    def only(self, tasks: list[str] | tuple[str, ...]) -> TaskData:
        """The same rows with the targets of ``tasks`` alone."""
        return TaskData(self.inputs, {t: self.targets[t] for t in tasks},
                        {t: self.masks[t] for t in tasks if t in self.masks})

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> TaskData:
        return self._map(lambda x: x.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> TaskData:
        """A copy in page-locked host memory, so copies to a GPU can overlap with compute."""
        return self._map(torch.Tensor.pin_memory)

    def _map(self, fn) -> TaskData:
        return TaskData(fn(self.inputs), {k: fn(v) for k, v in self.targets.items()},
                        {k: fn(m) for k, m in self.masks.items()})

    def labelled(self, task: str) -> torch.Tensor | None:
        """The mask of the samples labelled for ``task``, or None when all of them are."""
        return self.masks.get(task)

    @property
    def nbytes(self) -> int:
        return (self.inputs.nbytes + sum(t.nbytes for t in self.targets.values())
                + sum(m.nbytes for m in self.masks.values()))

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[TaskData]:
        """Minibatches in order, or shuffled with ``generator``; the last one may be short."""
        n = len(self)
        order = torch.randperm(n, generator=generator).to(self.inputs.device) if shuffle else None
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
            yield self.select(idx)


def _rows(value: object) -> int | None:
    """The number of rows of a tensor or an array (one per sample), None for anything else."""
    shape = getattr(value, "shape", None)
    if not isinstance(shape, tuple) or not shape or not isinstance(shape[0], int):
        return None
    return shape[0]


def _kind(value: object) -> str:
    """What ``value`` is, for a message: ``dict``, ``numpy.ndarray``, ``torch.Tensor of shape ()``."""
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    shape = getattr(value, "shape", None)
    return f"{kind} of shape {tuple(shape)}" if isinstance(shape, tuple) else kind


@dataclass(frozen=True)
class DatasetBundle:
    """What every dataset (built-in or a user's factory) returns.

    Attributes:
        train, val, test: the three disjoint splits.
        tasks: one ``TaskInfo`` per task, in the dataset's order.
        planted_groups: the known-good task grouping, for benchmarks with a planted structure.
    """

    train: TaskData
    val: TaskData
    test: TaskData
    tasks: tuple[TaskInfo, ...]
    planted_groups: tuple[tuple[str, ...], ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if not all(isinstance(t, TaskInfo) for t in self.tasks):
            raise DatasetError("DatasetBundle: tasks must be TaskInfo(name, kind, num_outputs) objects, one per task")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise DatasetError(f"DatasetBundle: task names repeat: {names}; give each task one TaskInfo")
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if not isinstance(split, TaskData):
                raise DatasetError(f"DatasetBundle: the {split_name} split is a {type(split).__name__}; give a "
                                   "TaskData(inputs, targets)")
            missing = set(names) - set(split.targets)
            if missing:
                raise DatasetError(f"DatasetBundle: the {split_name} split lacks targets for tasks {sorted(missing)}")
            fault = split.fault()
            if fault is not None:
                raise DatasetError(f"the {split_name} split{',' if fault.startswith('task ') else ':'} {fault}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch dimension."""
        return tuple(self.train.inputs.shape[1:])

    def task(self, name: str) -> TaskInfo:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)
