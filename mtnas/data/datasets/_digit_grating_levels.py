"""``digit_grating_levels``: three independent image factors of unequal difficulty, nine tasks.

Each 16x16 input is ``digit_gratings``' image (a handwritten digit under a sinusoidal grating, see
that module) plus a uniform brightness offset of one of four levels. Three tasks read each factor:

* the digit (hard; the grating is strong interference for it): ``digit``, ``parity``, ``ge5``;
* the grating (medium): ``orientation``, ``frequency``, ``diagonal``;
* the offset (easy, solved on any path: a global average of the input reads it): ``level``
  (4 classes), ``bright`` (level >= 2) and ``level_odd`` (level is 1 or 3).

The planted structure is the digit | grating split of ``digit_gratings``. The level tasks are
solved on any path (in every reference tree), but sharing layers with them costs the digit tasks
dearly (``python -m benchmarks.recovery_suite --truth --cases levels``; the figures are in
``benchmarks/README.md``), while the grating tasks share with them at no cost: they belong with
the gratings or on their own. ``planted_groups``
lists the three factors.
"""

from __future__ import annotations

import numpy as np

from mtnas.data._bundle import DatasetBundle, TaskInfo
from mtnas.data.datasets._common import check_float
from mtnas.data.datasets._digit_gratings import DIGIT_GRATINGS_TASKS, draw_digit_gratings, task_data
from mtnas.data.datasets._registry import DATASETS

__all__ = ["DIGIT_GRATING_LEVELS_TASKS", "LEVELS", "make_digit_grating_levels"]

#: Brightness offset of each ``level`` class, in units of the digit's [0, 1] range (times ``step``).
LEVELS = (0.0, 1.0, 2.0, 3.0)

DIGIT_GRATING_LEVELS_TASKS: tuple[TaskInfo, ...] = DIGIT_GRATINGS_TASKS + (
    TaskInfo("level", "classification", 4, "brightness offset level 0..3"),
    TaskInfo("bright", "classification", 2, "offset level is 2 or 3 (1) or not (0)"),
    TaskInfo("level_odd", "classification", 2, "offset level is 1 or 3 (1) or not (0)"),
)
PLANTED_GROUPS = (("digit", "parity", "ge5"), ("orientation", "frequency", "diagonal"), ("level", "bright", "level_odd"))


@DATASETS.register("digit_grating_levels")
def make_digit_grating_levels(
    *, n_train: int = 3000, n_val: int = 1000, n_test: int = 1000, seed: int = 0, amplitude: float = 0.6,
    step: float = 0.4,
) -> DatasetBundle:
    """Digits under gratings with a brightness offset: inputs (N, 1, 16, 16) float32, nine tasks.

    Args:
        n_train, n_val, n_test: samples per split.
        seed: fixes the pools, the digits, the gratings and the offsets.
        amplitude: peak-to-peak of the grating, relative to the digit's [0, 1] range.
        step: the offset between two adjacent levels.
    """
    step = check_float("digit_grating_levels", "step", step, minimum=0.0)
    draws = draw_digit_gratings("digit_grating_levels", n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
                                amplitude=amplitude, tasks=len(DIGIT_GRATING_LEVELS_TASKS))
    splits = {}
    for split, rng, inputs, targets, _ in draws:
        level = rng.integers(len(LEVELS), size=len(inputs))
        offset = (step * np.asarray(LEVELS)[level]).astype(np.float32)[:, None, None]
        targets.update(level=level.astype(np.int64), bright=(level >= 2).astype(np.int64),
                       level_odd=(level % 2).astype(np.int64))
        splits[split] = task_data(inputs + offset, targets)
    return DatasetBundle(**splits, tasks=DIGIT_GRATING_LEVELS_TASKS, planted_groups=PLANTED_GROUPS)
