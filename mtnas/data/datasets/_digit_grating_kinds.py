"""``digit_grating_kinds``: ``digit_gratings``' two factors, each read by tasks of four kinds.

Each 16x16 input is ``digit_gratings``' image: a handwritten digit under a sinusoidal grating.
Three tasks read each factor, of different kinds, with loss scales four orders of magnitude apart
(as a segmentation, a depth and a normal task are in NYUv2):

* the digit: ``digit`` (classification, 10 classes, cross-entropy ~1), ``stroke`` (dense
  classification: is the pixel on the digit's stroke), ``ink`` (regression: how many pixels the
  stroke covers, about 30 +- 10, so its mean squared error starts near 1,000);
* the grating: ``orientation`` (classification, 4 classes), ``grating_map`` (dense regression: the
  grating's value at every pixel, in hundredths, so its L1 loss is near 0.001), ``phase``
  (regression: the sine of the grating's phase, the grating's value at the top-left corner).

The data plant digit | grating (``planted_groups``), as in ``digit_gratings``: the grating is
strong interference for the digit tasks. A search that weighs tasks by their losses sees mostly
``ink``; one that groups by kind puts the two classifications together. Trained with the space's
equal loss balancing, though, the best tree is not the planted one: ``ink``'s loss takes every
layer it shares, so it is best on a branch of its own (the recovery suite's ``kinds`` case holds
the trees that show it).
"""

from __future__ import annotations

import numpy as np
import torch

from mtnas.data._bundle import DatasetBundle, TaskData, TaskInfo
from mtnas.data.datasets._digit_gratings import draw_digit_gratings
from mtnas.data.datasets._registry import DATASETS

__all__ = ["DIGIT_GRATING_KINDS_TASKS", "make_digit_grating_kinds"]

DIGIT_GRATING_KINDS_TASKS: tuple[TaskInfo, ...] = (
    TaskInfo("digit", "classification", 10, "class of the handwritten digit"),
    TaskInfo("stroke", "dense_classification", 2, "pixel is on the digit's stroke (clean intensity > 0.5)"),
    TaskInfo("ink", "regression", 1, "number of stroke pixels"),
    TaskInfo("orientation", "classification", 4, "grating orientation: 0, 45, 90 or 135 degrees"),
    TaskInfo("grating_map", "dense_regression", 1, "the grating's value at every pixel, x 0.01"),
    TaskInfo("phase", "regression", 1, "sine of the grating's phase"),
)
PLANTED_GROUPS = (("digit", "stroke", "ink"), ("orientation", "grating_map", "phase"))


@DATASETS.register("digit_grating_kinds")
def make_digit_grating_kinds(
    *, n_train: int = 3000, n_val: int = 1000, n_test: int = 1000, seed: int = 0, amplitude: float = 0.6
) -> DatasetBundle:
    """Digits under gratings: inputs (N, 1, 16, 16) float32, six tasks of four kinds.

    Args:
        n_train, n_val, n_test: samples per split.
        seed: fixes the pools, the digits and the gratings (the same samples as ``digit_gratings``).
        amplitude: peak-to-peak of the grating, relative to the digit's [0, 1] range.
    """
    draws = draw_digit_gratings("digit_grating_kinds", n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
                                amplitude=amplitude, tasks=len(DIGIT_GRATING_KINDS_TASKS))
    splits = {}
    for split, _, inputs, targets, parts in draws:
        stroke = (parts["digit"] > 0.5).astype(np.int64)  # (N, 16, 16)
        splits[split] = TaskData(
            _tensor(inputs[:, None]),
            {
                "digit": _tensor(targets["digit"]),
                "stroke": _tensor(stroke),
                "ink": _tensor(stroke.sum(axis=(1, 2))[:, None].astype(np.float32)),
                "orientation": _tensor(targets["orientation"]),
                "grating_map": _tensor(0.01 * parts["grating"][:, None]),
                "phase": _tensor(np.sin(parts["phase"])[:, None].astype(np.float32)),
            },
        )
    return DatasetBundle(**splits, tasks=DIGIT_GRATING_KINDS_TASKS, planted_groups=PLANTED_GROUPS)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """numpy -> torch, float arrays as float32."""
    return torch.from_numpy(np.ascontiguousarray(array.astype(np.float32) if array.dtype.kind == "f" else array))
