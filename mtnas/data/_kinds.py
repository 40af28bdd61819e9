"""The task kinds a dataset may declare, and the target each expects. Plain data, no torch: a
search space's task kinds are checked with it before anything heavy is imported."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["TASK_KINDS"]

#: Task kinds and the target each one expects, per sample.
TASK_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "classification": "int64 class index, shape ()",
        "multilabel": "float 0/1, shape (num_outputs,)",
        "regression": "float, shape (num_outputs,)",
        "dense_classification": "int64 class index per pixel, shape (H, W)",
        "dense_regression": "float per pixel, shape (num_outputs, H, W)",
    }
)
