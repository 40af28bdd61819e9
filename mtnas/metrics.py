"""Task metrics with their direction, computed from summed statistics.

Each metric turns one batch into a small vector of sums (``stats``) and a split's summed vector into
its value (``finish``). Sums add across batches and across DDP ranks, so evaluation streams and
reduces with one ``all_reduce``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mtnas.registry import Registry

__all__ = ["METRICS", "Metric", "get_metric"]


@dataclass(frozen=True)
class Metric:
    """A metric: batch statistics, their reduction to a value, and which way is better."""

    stats: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    finish: Callable[[torch.Tensor], float]
    higher_is_better: bool
    kinds: frozenset[str]
    description: str


METRICS: Registry[Metric] = Registry("metric")


def get_metric(name: str, kind: str) -> Metric:
    """The metric ``name``; errors when it does not fit tasks of ``kind``."""
    return METRICS.get_for_kind(name, kind)


def _ratio(stats: torch.Tensor) -> float:
    return float(stats[0] / stats[1].clamp_min(1))


def _accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # pred (B, C) or (B, C, H, W) logits; target (B,) or (B, H, W) class indices
    return torch.stack([(pred.argmax(1) == target).sum().double(), torch.tensor(target.numel(), dtype=torch.float64)])


def _label_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    correct = ((pred > 0) == (target > 0.5)).sum().double()
    return torch.stack([correct, torch.tensor(target.numel(), dtype=torch.float64)])


def _confusion(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    c = pred.shape[1]
    index = target.reshape(-1) * c + pred.argmax(1).reshape(-1)
    return torch.bincount(index, minlength=c * c).double()


def _miou(stats: torch.Tensor) -> float:
    c = int(round(stats.numel() ** 0.5))
    conf = stats.reshape(c, c)
    inter = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else 0.0


def _binary_counts(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Positive class 1: (tp, fp, fn)
    p, t = pred.argmax(1) == 1, target == 1
    return torch.stack([(p & t).sum(), (p & ~t).sum(), (~p & t).sum()]).double()


def _f1(stats: torch.Tensor) -> float:
    tp, fp, fn = stats.tolist()
    return 2 * tp / max(2 * tp + fp + fn, 1.0)


def _abs_err(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.stack([(pred - target).abs().sum().double(), torch.tensor(target.numel(), dtype=torch.float64)])


def _rel_err(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = target.abs() > 1e-6
    rel = ((pred - target).abs() / target.abs().clamp_min(1e-6))[valid]
    return torch.stack([rel.sum().double(), valid.sum().double()])


def _squared_err(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.stack([((pred - target) ** 2).sum().double(), torch.tensor(target.numel(), dtype=torch.float64)])


def _angle(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # (B, 3, H, W) normals: mean angle in degrees between predicted and true directions.
    cos = F.cosine_similarity(pred.float(), target.float(), dim=1).clamp(-1, 1)
    deg = torch.rad2deg(torch.acos(cos))
    return torch.stack([deg.sum().double(), torch.tensor(deg.numel(), dtype=torch.float64)])


_CLASS = frozenset({"classification", "dense_classification"})
_REG = frozenset({"regression", "dense_regression"})
METRICS.add("accuracy", Metric(_accuracy, _ratio, True, _CLASS, "fraction of correct classes"))
METRICS.add("pixel_accuracy", Metric(_accuracy, _ratio, True, frozenset({"dense_classification"}), "fraction of correct pixels"))
METRICS.add("miou", Metric(_confusion, _miou, True, _CLASS, "mean intersection over union"))
METRICS.add("f1", Metric(_binary_counts, _f1, True, _CLASS, "F1 of class 1 (binary tasks, e.g. edges)"))
METRICS.add("label_accuracy", Metric(_label_accuracy, _ratio, True, frozenset({"multilabel"}), "fraction of correct labels"))
METRICS.add("abs_err", Metric(_abs_err, _ratio, False, _REG, "mean absolute error"))
METRICS.add("rel_err", Metric(_rel_err, _ratio, False, _REG, "mean relative absolute error"))
METRICS.add("mse", Metric(_squared_err, _ratio, False, _REG, "mean squared error"))
METRICS.add("angle_mean", Metric(_angle, _ratio, False, frozenset({"dense_regression"}), "mean angular error (degrees)"))
