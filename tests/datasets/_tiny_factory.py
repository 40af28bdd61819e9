"""User-style dataset factories for the factory-loading tests (not a test module itself)."""

from __future__ import annotations

import torch

from mtnas.data import DatasetBundle, TaskData, TaskInfo


def make(*, n: int = 4, seed: int = 0) -> DatasetBundle:
    """A tiny two-task dataset: inputs (n, 2), a class and a regression target."""
    g = torch.Generator().manual_seed(seed)
    split = TaskData(torch.rand(n, 2, generator=g), {"cls": torch.arange(n) % 2, "reg": torch.rand(n, 1, generator=g)})
    tasks = (TaskInfo("cls", "classification", 2), TaskInfo("reg", "regression", 1))
    return DatasetBundle(split, split, split, tasks)


def not_a_bundle(*, n: int = 4) -> dict:
    """Returns the pieces of a dataset, not a DatasetBundle: a mistake the loader must name."""
    return {"train": torch.zeros(n, 2)}


NOT_CALLABLE = 3


def isolate_plugins(monkeypatch) -> None:
    """Let a test register datasets and backbones freely: its registrations end with it."""
    from mtnas.data.datasets import USER_DATASETS
    from mtnas.nn import USER_BACKBONES

    for registry in (USER_DATASETS, USER_BACKBONES):
        for attr in ("_raw", "_made", "_specs"):
            monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
