"""Metrics, losses and delta-m: values on hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch

from mtnas.core import MtnasError
from mtnas.nn import LOSSES, METRICS, get_loss, get_metric
from mtnas.space import load_resolved
from mtnas.train import delta_m


def _value(name: str, kind: str, pred: torch.Tensor, target: torch.Tensor) -> float:
    m = get_metric(name, kind)
    half = len(pred) // 2  # streamed in two batches: the sums must add up
    return m.finish(m.stats(pred[:half], target[:half]) + m.stats(pred[half:], target[half:]))


def test_accuracy() -> None:
    pred = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    assert _value("accuracy", "classification", pred, torch.tensor([0, 1, 1, 0])) == 0.5


def test_miou_matches_hand_computation() -> None:
    # pixels: target 0,0,1,1 ; predicted 0,1,1,1 -> IoU(0)=1/2, IoU(1)=2/3
    pred = torch.nn.functional.one_hot(torch.tensor([[[0, 1]], [[1, 1]]]), 2).permute(0, 3, 1, 2).float()
    target = torch.tensor([[[0, 0]], [[1, 1]]])
    assert _value("miou", "dense_classification", pred, target) == pytest.approx((0.5 + 2 / 3) / 2)


def test_angle_mean_is_degrees() -> None:
    pred = torch.zeros(2, 3, 1, 1)
    pred[:, 0] = 1.0
    target = torch.zeros(2, 3, 1, 1)
    target[0, 0] = 1.0
    target[1, 1] = 1.0
    assert _value("angle_mean", "dense_regression", pred, target) == pytest.approx(45.0)


def test_f1_and_abs_err() -> None:
    pred = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert _value("f1", "classification", pred, torch.tensor([1, 0, 1, 0])) == pytest.approx(0.5)
    assert _value("abs_err", "regression", torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])) == 1.5


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_has_a_direction_and_fits_a_kind(name: str) -> None:
    m = METRICS.get(name)
    assert isinstance(m.higher_is_better, bool) and m.kinds


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_is_differentiable(name: str) -> None:
    kind = sorted(LOSSES.get(name).kinds)[0]
    shapes = {
        "classification": ((4, 3), torch.tensor([0, 1, 2, 0])),
        "dense_classification": ((2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)),
        "multilabel": ((4, 3), torch.ones(4, 3)),
        "regression": ((4, 2), torch.zeros(4, 2)),
        "dense_regression": ((2, 3, 4, 4), torch.ones(2, 3, 4, 4)),
    }
    shape, target = shapes[kind]
    pred = torch.randn(*shape, requires_grad=True)
    loss = get_loss(name, kind)(pred, target)
    loss.backward()
    assert loss.ndim == 0 and math.isfinite(loss.item()) and pred.grad is not None


def test_metric_of_the_wrong_kind_is_an_error() -> None:
    with pytest.raises(MtnasError, match="metric 'miou' does not fit regression tasks; valid: abs_err"):
        get_metric("miou", "regression")


def test_delta_m_signs_follow_metric_direction() -> None:
    space, _ = load_resolved("synth_scenes")
    base = {t.name: {m: 1.0 for m in t.metrics} for t in space.tasks}
    better = {t.name: {m: (1.1 if get_metric(m, t.kind).higher_is_better else 0.9) for m in t.metrics} for t in space.tasks}
    assert delta_m(better, base, space) == pytest.approx(10.0)
    assert delta_m(base, base, space) == 0.0
