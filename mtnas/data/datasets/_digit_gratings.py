"""``digit_gratings``: the planted-structure benchmark, a digit under a sinusoidal grating.

Each 16x16 input is a real handwritten digit (scikit-learn's 8x8 digits, bilinearly upsampled) plus
an independent sinusoidal grating. Digit tasks read the stroke shapes, grating tasks read the
stripes; the grating is strong interference for the digit, so a small shared network does better
when the two groups split early. The known-good tree is ``planted_groups``.

The grating at pixel (row y, column x) is::

    amplitude / 2 * sin(2 pi * f / 16 * (x cos(theta) + y sin(theta)) + phase)

with theta in {0, 45, 90, 135} degrees (the direction of the wave vector, measured from the column
axis towards the row axis; 0 gives vertical stripes), f in {2, 4} cycles per 16 pixels (periods of
8 and 4 pixels, both still resolved by a 3x3 kernel ahead of a stride-2 layer) and a uniform phase.
Its peak-to-peak is ``amplitude`` (0.6 of the digit's [0, 1] range by default). Inputs are not
clipped: they lie in [-amplitude/2, 1 + amplitude/2].
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mtnas.data._bundle import DatasetBundle, TaskData, TaskInfo
from mtnas.data.datasets._common import check_float, check_int, check_seed, check_total, streams
from mtnas.data.datasets._digits import digit_images, digit_targets, split_pools, upsample
from mtnas.data.datasets._registry import DATASETS

__all__ = ["DIGIT_GRATINGS_TASKS", "FREQUENCIES", "ORIENTATIONS_DEG", "SIZE", "draw_digit_gratings", "gratings",
           "make_digit_gratings", "task_data"]

#: Side of the square input, in pixels.
SIZE = 16
#: Grating orientation of each ``orientation`` class, in degrees.
ORIENTATIONS_DEG = (0.0, 45.0, 90.0, 135.0)
#: Grating frequency of each ``frequency`` class, in cycles per ``SIZE`` pixels.
FREQUENCIES = (2.0, 4.0)

DIGIT_GRATINGS_TASKS: tuple[TaskInfo, ...] = (
    TaskInfo("digit", "classification", 10, "class of the handwritten digit"),
    TaskInfo("parity", "classification", 2, "digit is odd (1) or even (0)"),
    TaskInfo("ge5", "classification", 2, "digit is >= 5 (1) or not (0)"),
    TaskInfo("orientation", "classification", 4, "grating orientation: 0, 45, 90 or 135 degrees"),
    TaskInfo("frequency", "classification", 2, "grating frequency: 2 or 4 cycles per 16 pixels"),
    TaskInfo("diagonal", "classification", 2, "grating is diagonal (45 or 135 degrees)"),
)
PLANTED_GROUPS = (("digit", "parity", "ge5"), ("orientation", "frequency", "diagonal"))


def gratings(orientation: np.ndarray, frequency: np.ndarray, phase: np.ndarray, amplitude: float,
             shape: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """Gratings (N, H, W) of ``shape`` (H, W) for class indices ``orientation``, ``frequency`` and
    phases (N,); the frequency stays in cycles per ``SIZE`` pixels whatever the shape."""
    theta = np.deg2rad(np.asarray(ORIENTATIONS_DEG))[orientation][:, None, None]  # (N, 1, 1)
    cycles = np.asarray(FREQUENCIES)[frequency][:, None, None]
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]  # (H, W) row and column indices
    arg = 2 * np.pi * cycles / SIZE * (x * np.cos(theta) + y * np.sin(theta)) + phase[:, None, None]
    return (amplitude / 2 * np.sin(arg)).astype(np.float32)


def draw_digit_gratings(
    name: str, *, n_train: int, n_val: int, n_test: int, seed: int, amplitude: float, tasks: int
) -> Iterator[tuple[str, np.random.Generator, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Checks the arguments of dataset ``name``, then per split ``(split, rng, inputs, targets, parts)``:
    digits under gratings (N, SIZE, SIZE) float32, the six tasks' targets, and the parts of each
    input (``digit`` and ``grating`` images, the grating's ``phase``) for a dataset that reads them
    in other ways. ``rng`` is the split's stream, left where the draws stopped, for a dataset that
    adds a factor of its own; ``tasks`` (the dataset's task count) bounds the size check."""
    sizes = {
        split: check_int(name, f"n_{split}", n, minimum=1)
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test))
    }
    seed = check_seed(name, seed)
    check_total(name, sum(sizes.values()) * (SIZE * SIZE + tasks))
    amplitude = check_float(name, "amplitude", amplitude, minimum=0.0)
    images, labels = digit_images()
    clean = upsample(images, SIZE)  # (1797, 16, 16) in [0, 1]
    pools = split_pools(seed)._asdict()
    rngs = streams(seed, tuple(sizes))
    for split, n in sizes.items():
        rng = rngs[split]
        source = rng.choice(pools[split], size=n)
        orientation = rng.integers(len(ORIENTATIONS_DEG), size=n)
        frequency = rng.integers(len(FREQUENCIES), size=n)
        phase = rng.uniform(0.0, 2 * np.pi, size=n)
        grating = gratings(orientation, frequency, phase, amplitude)  # (N, 16, 16)
        inputs = clean[source] + grating
        targets = {
            **digit_targets(labels[source]),
            "orientation": orientation.astype(np.int64),
            "frequency": frequency.astype(np.int64),
            "diagonal": (orientation % 2).astype(np.int64),  # classes 1 and 3 are 45 and 135 degrees
        }
        yield split, rng, inputs, targets, {"digit": clean[source], "grating": grating, "phase": phase}


def task_data(inputs: np.ndarray, targets: dict[str, np.ndarray]) -> TaskData:
    """``TaskData`` of images (N, SIZE, SIZE) as (N, 1, SIZE, SIZE) float32 and their targets."""
    return TaskData(torch.from_numpy(inputs.astype(np.float32)[:, None]), {k: torch.from_numpy(v) for k, v in targets.items()})


@DATASETS.register("digit_gratings")
def make_digit_gratings(
    *, n_train: int = 3000, n_val: int = 1000, n_test: int = 1000, seed: int = 0, amplitude: float = 0.6
) -> DatasetBundle:
    """Digits under gratings: inputs (N, 1, 16, 16) float32, six classification tasks.

    Args:
        n_train, n_val, n_test: samples per split. Each digit comes from the split's own pool of
            source images (see ``split_pools``); the grating's parameters are drawn independently.
        seed: fixes the pools, the digits and the gratings. The digits drawn do not depend on
            ``amplitude``, so ``amplitude=0`` gives the same samples without their gratings.
        amplitude: peak-to-peak of the grating, relative to the digit's [0, 1] range.
    """
    draws = draw_digit_gratings("digit_gratings", n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
                                amplitude=amplitude, tasks=len(DIGIT_GRATINGS_TASKS))
    splits = {split: task_data(inputs, targets) for split, _, inputs, targets, _ in draws}
    return DatasetBundle(**splits, tasks=DIGIT_GRATINGS_TASKS, planted_groups=PLANTED_GROUPS)
