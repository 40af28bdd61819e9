"""Masked metrics of the real benchmarks: ignored labels, invalid depth and normals, angle statistics."""

from __future__ import annotations

import pytest
import torch

from mtnas.nn import METRICS, get_metric


def _value(name: str, pred: torch.Tensor, target: torch.Tensor, kind: str = "dense_regression") -> float:
    m = get_metric(name, kind)
    half = len(pred) // 2  # streamed in two batches: the sums must add up
    return m.finish(m.stats(pred[:half], target[:half]) + m.stats(pred[half:], target[half:]))


def _normals(*angles_deg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions (B, 3, 1, 1) at the given angles from targets that all point along x."""
    a = torch.deg2rad(torch.tensor(angles_deg, dtype=torch.float64))
    pred = torch.stack([torch.cos(a), torch.sin(a), torch.zeros_like(a)], dim=1).float()[..., None, None]
    target = torch.zeros_like(pred)
    target[:, 0] = 1.0
    return pred, target


def test_angles_over_valid_pixels() -> None:
    pred, target = _normals(0.0, 90.0, 0.0, 90.0, 0.0, 90.0)
    target[3] = 0.0  # invalid: a zero normal, its 90 degrees must not count
    target[5] = 0.0
    assert _value("angle_mean", pred, target) == pytest.approx(90 / 4, abs=1e-4)
    assert _value("angle_median", pred, target) == pytest.approx(0.0, abs=0.1)  # angles 0, 0, 0, 90
    assert _value("angle_11", pred, target) == pytest.approx(0.75)


def test_within_thresholds_are_strict_fractions() -> None:
    pred, target = _normals(5.0, 11.0, 12.0, 22.0, 23.0, 29.0, 31.0, 120.0)
    assert _value("angle_11", pred, target) == pytest.approx(2 / 8)
    assert _value("angle_22", pred, target) == pytest.approx(4 / 8)
    assert _value("angle_30", pred, target) == pytest.approx(6 / 8)


@pytest.mark.parametrize(
    ("angles", "median"),
    [((10.0, 20.0, 30.0), 20.0), ((0.0, 90.0, 90.0), 90.0), ((45.0,), 45.0), ((1.0, 2.0, 3.0, 170.0, 179.0), 3.0)],
)
def test_median_is_within_a_tenth_of_a_degree(angles: tuple[float, ...], median: float) -> None:
    pred, target = _normals(*angles)
    assert _value("angle_median", pred, target) == pytest.approx(median, abs=0.1)


def test_median_of_many_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    angles = torch.rand(2001, generator=g, dtype=torch.float64) * 60
    pred, target = _normals(*angles.tolist())
    assert _value("angle_median", pred, target) == pytest.approx(float(angles.median()), abs=0.1)


def test_opposite_normals_are_180_degrees_and_no_valid_pixel_gives_zero() -> None:
    pred, target = _normals(180.0, 180.0)
    assert _value("angle_median", pred, target) == pytest.approx(180.0, abs=0.1)
    assert _value("angle_30", pred, target) == 0.0
    assert _value("angle_median", pred, torch.zeros_like(target)) == 0.0
    assert _value("angle_mean", pred, torch.zeros_like(target)) == 0.0


def test_depth_abs_err_skips_zero_targets() -> None:
    pred = torch.tensor([1.0, 2.0, 5.0, 9.0]).reshape(4, 1, 1, 1)
    target = torch.tensor([2.0, 0.0, 4.0, 0.0]).reshape(4, 1, 1, 1)
    assert _value("depth_abs_err", pred, target) == pytest.approx(1.0)  # |1-2| and |5-4|
    assert _value("abs_err", pred, target) == pytest.approx((1 + 2 + 1 + 9) / 4)  # unchanged: all pixels
    assert _value("rel_err", pred, target) == pytest.approx((0.5 + 0.25) / 2)  # already skips zero targets


def _logits(classes: list[list[int]], c: int) -> torch.Tensor:
    """(B, c, 1, W) logits whose argmax is ``classes``."""
    return torch.nn.functional.one_hot(torch.tensor(classes), c).permute(0, 2, 1)[:, :, None].float()


def test_segmentation_metrics_ignore_negative_targets() -> None:
    # predicted 0,1 | 1,1 ; target 0,-100 | 1,-100 -> only the first pixel of each image counts
    pred = _logits([[0, 1], [1, 1]], 3)
    target = torch.tensor([[[0, -100]], [[1, -100]]])
    assert _value("pixel_accuracy", pred, target, "dense_classification") == 1.0
    assert _value("miou", pred, target, "dense_classification") == 1.0  # class 2 absent: left out
    # a wrong pixel among the kept ones: target 0,0 | 1,-100 ; predicted 0,1 | 1,1
    target = torch.tensor([[[0, 0]], [[1, -100]]])
    assert _value("pixel_accuracy", pred, target, "dense_classification") == pytest.approx(2 / 3)
    assert _value("miou", pred, target, "dense_classification") == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_adding_ignored_pixels_changes_no_class_metric() -> None:
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(4, 5, 3, 3, generator=g), torch.randint(0, 5, (4, 3, 3), generator=g)
    more_pred = torch.cat([pred, torch.randn(4, 5, 3, 2, generator=g)], dim=3)  # two more columns ...
    more_target = torch.cat([target, torch.full((4, 3, 2), -100)], dim=2)  # ... all of them ignored
    kind = "dense_classification"
    for name in ("miou", "pixel_accuracy", "f1"):
        assert _value(name, more_pred, more_target, kind) == pytest.approx(_value(name, pred, target, kind)), name


@pytest.mark.parametrize(
    ("name", "higher"),
    [
        ("miou", True),
        ("pixel_accuracy", True),
        ("depth_abs_err", False),
        ("angle_mean", False),
        ("angle_median", False),
        ("angle_11", True),
        ("angle_22", True),
        ("angle_30", True),
    ],
)
def test_directions(name: str, higher: bool) -> None:
    assert METRICS.get(name).higher_is_better is higher


def test_depth_l1_loss_ignores_unmeasured_pixels_and_its_gradient_stays_off_them() -> None:
    from mtnas.nn import get_loss

    target = torch.tensor([[[[0.0, 2.0], [4.0, 0.0]]]])  # (1, 1, 2, 2): two pixels unmeasured
    pred = torch.tensor([[[[9.0, 3.0], [2.0, -7.0]]]], requires_grad=True)
    loss = get_loss("depth_l1", "dense_regression")(pred, target)
    assert loss.item() == pytest.approx((1.0 + 2.0) / 2)
    loss.backward()
    assert pred.grad[0, 0, 0, 0] == 0 and pred.grad[0, 0, 1, 1] == 0 and pred.grad[0, 0, 0, 1] != 0


def test_image_level_accuracy_and_f1_skip_unlabelled_samples() -> None:
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # predicts 1, 0, 1
    target = torch.tensor([1, 0, -100])  # the third sample has no label
    for name, expected in (("accuracy", 1.0), ("f1", 1.0)):
        metric = get_metric(name, "classification")
        assert metric.finish(metric.stats(logits, target)) == pytest.approx(expected)
