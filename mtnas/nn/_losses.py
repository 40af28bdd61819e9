"""Task losses by name; each states the task kinds it serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mtnas.core import Registry

__all__ = ["LOSSES", "LossType", "get_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LossType:
    """``fn(prediction, target) -> scalar``, and the task kinds it fits."""

    fn: LossFn
    kinds: frozenset[str]


LOSSES: Registry[LossType] = Registry("loss")


def get_loss(name: str, kind: str) -> LossFn:
    """The loss ``name``; errors when it does not fit tasks of ``kind``."""
    return LOSSES.get_for_kind(name, kind).fn


def _cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # (B, C, H, W): one minus the cosine between predicted and true vectors, per pixel.
    return (1 - F.cosine_similarity(pred, target, dim=1)).mean()


def _depth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # L1 over valid pixels only: a depth of 0 marks a pixel the sensor did not measure.
    valid = target != 0
    return ((pred - target).abs() * valid).sum() / valid.sum().clamp_min(1)


_REGRESSION = frozenset({"regression", "dense_regression"})
LOSSES.add("cross_entropy", LossType(F.cross_entropy, frozenset({"classification", "dense_classification"})))
LOSSES.add("bce", LossType(F.binary_cross_entropy_with_logits, frozenset({"multilabel"})))
LOSSES.add("mse", LossType(F.mse_loss, _REGRESSION))
LOSSES.add("l1", LossType(F.l1_loss, _REGRESSION))
LOSSES.add("depth_l1", LossType(_depth_l1, _REGRESSION))
LOSSES.add("cosine", LossType(_cosine, frozenset({"dense_regression"})))
