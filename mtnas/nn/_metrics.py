"""Task metrics with their direction, computed from summed statistics.

Each metric turns one batch into a small vector of sums (``stats``) and a split's summed vector into
its value (``finish``). Sums add across batches and across DDP ranks, so evaluation streams and
reduces with one ``all_reduce``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mtnas.core import Registry

__all__ = ["METRICS", "Metric", "get_metric"]


@dataclass(frozen=True)
class Metric:
    """A metric: batch statistics, their reduction to a value, and which way is better."""

    stats: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    finish: Callable[[torch.Tensor], float]
    higher_is_better: bool
    kinds: frozenset[str]
    description: str
    bounds: tuple[float, float] = (-math.inf, math.inf)  # every value it can take: a stored one outside is damage


METRICS: Registry[Metric] = Registry("metric")


def get_metric(name: str, kind: str) -> Metric:
    """The metric ``name``; errors when it does not fit tasks of ``kind``."""
    return METRICS.get_for_kind(name, kind)


def _ratio(stats: torch.Tensor) -> float:
    return float(stats[0] / stats[1].clamp_min(1))


def _accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # pred (B, C) or (B, C, H, W) logits; target (B,) or (B, H, W) class indices, < 0: ignored
    valid = target >= 0
    return torch.stack([((pred.argmax(1) == target) & valid).sum().double(), valid.sum().double()])


def _label_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    correct = ((pred > 0) == (target > 0.5)).sum().double()
    return torch.stack([correct, torch.tensor(target.numel(), dtype=torch.float64)])


def _confusion(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    c = pred.shape[1]
    valid = target >= 0  # ignored pixels (e.g. -100, cross_entropy's ignore_index) leave the matrix
    index = target[valid] * c + pred.argmax(1)[valid]
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
    valid = target >= 0
    p, t = (pred.argmax(1) == 1) & valid, target == 1
    return torch.stack([(p & t).sum(), (p & ~t & valid).sum(), (~p & t).sum()]).double()


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
    # (B, 3, H, W) normals: mean angle in degrees between predicted and true directions;
    # a target that is 0 in every channel is invalid and left out.
    deg = _valid_angles(pred, target)
    return torch.stack([deg.sum().double(), _count(deg)])


_CLASS = frozenset({"classification", "dense_classification"})
_REG = frozenset({"regression", "dense_regression"})
_FRACTION, _ERROR, _DEGREES = (0.0, 1.0), (0.0, math.inf), (0.0, 180.0)
METRICS.add("accuracy", Metric(_accuracy, _ratio, True, _CLASS, "fraction of correct classes", _FRACTION))
METRICS.add("pixel_accuracy", Metric(_accuracy, _ratio, True, frozenset({"dense_classification"}), "fraction of correct pixels",
                                     _FRACTION))
METRICS.add("miou", Metric(_confusion, _miou, True, _CLASS, "mean intersection over union", _FRACTION))
METRICS.add("f1", Metric(_binary_counts, _f1, True, _CLASS, "F1 of class 1 (binary tasks, e.g. edges)", _FRACTION))
METRICS.add("label_accuracy", Metric(_label_accuracy, _ratio, True, frozenset({"multilabel"}), "fraction of correct labels",
                                     _FRACTION))
METRICS.add("abs_err", Metric(_abs_err, _ratio, False, _REG, "mean absolute error", _ERROR))
METRICS.add("rel_err", Metric(_rel_err, _ratio, False, _REG, "mean relative absolute error", _ERROR))
METRICS.add("mse", Metric(_squared_err, _ratio, False, _REG, "mean squared error", _ERROR))
METRICS.add("angle_mean", Metric(_angle, _ratio, False, frozenset({"dense_regression"}), "mean angular error (degrees)",
                                 _DEGREES))


# -- real benchmarks: invalid pixels leave the sums ------------------------------------------------
# Class targets < 0 are ignored by every class metric above (the datasets use -100,
# cross_entropy's ignore_index); depth 0 is invalid; a normal that is 0 in every channel is
# invalid (``angle_mean`` and the ones below). ``rel_err`` already skips zero targets.

_ANGLE_BIN = 0.1  # degrees per bin of the streamed angle histogram
_ANGLE_BINS = int(round(180 / _ANGLE_BIN))


def _depth_abs_err(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = target != 0
    return torch.stack([(pred - target).abs()[valid].sum().double(), valid.sum().double()])


def _count(deg: torch.Tensor) -> torch.Tensor:
    return torch.tensor(deg.numel(), dtype=torch.float64, device=deg.device)


def _valid_angles(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angles in degrees (P,) between (B, 3, H, W) predicted and true normals, at valid pixels."""
    valid = (target != 0).any(dim=1)  # (B, H, W)
    cos = F.cosine_similarity(pred.float(), target.float(), dim=1).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cos))[valid]


def _angle_histogram(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    bins = (_valid_angles(pred, target) / _ANGLE_BIN).long().clamp(0, _ANGLE_BINS - 1)
    return torch.bincount(bins, minlength=_ANGLE_BINS).double()


def _histogram_median(stats: torch.Tensor) -> float:
    """The 50 % quantile of the angle histogram, linear within a bin.

    An approximation that streams: it lies in the 0.1-degree bin of the ceil(n/2)-th smallest angle,
    so within 0.1 degree of it (the exact median for odd n; over the many pixels of a split the two
    middle angles are all but equal). 0.0 when no pixel is valid, like the ratio metrics.
    """
    n = float(stats.sum())
    if n == 0:
        return 0.0
    cumulative = stats.cumsum(0)
    half = torch.tensor(n / 2, dtype=cumulative.dtype)
    k = int(torch.searchsorted(cumulative, half))
    before = float(cumulative[k] - stats[k])
    return (k + (n / 2 - before) / float(stats[k])) * _ANGLE_BIN


def _within(degrees: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def stats(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        deg = _valid_angles(pred, target)
        return torch.stack([(deg < degrees).sum().double(), _count(deg)])

    return stats


_DENSE_REG = frozenset({"dense_regression"})
_ZERO = "a target 0 in every channel is invalid"
METRICS.add(
    "depth_abs_err",
    Metric(_depth_abs_err, _ratio, False, _DENSE_REG, "mean absolute error, targets of 0 ignored", _ERROR),
)
METRICS.add(
    "angle_median",
    Metric(_angle_histogram, _histogram_median, False, _DENSE_REG, f"median angular error (0.1-degree bins); {_ZERO}",
           _DEGREES),
)
for _name, _degrees in (("angle_11", 11.25), ("angle_22", 22.5), ("angle_30", 30.0)):
    METRICS.add(
        _name,
        Metric(_within(_degrees), _ratio, True, _DENSE_REG, f"fraction within {_degrees} degrees; {_ZERO}", _FRACTION),
    )
