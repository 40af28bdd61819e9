"""``multi_digits``: two real handwritten digits side by side, a small MultiMNIST.

After MultiMNIST (Sabour et al., 2017, "Dynamic Routing Between Capsules"; used for multi-task
learning by Sener & Koltun, 2018), built from scikit-learn's 8x8 digits so it needs no download.
"""

from __future__ import annotations

import numpy as np
import torch

from mtnas.data._bundle import DatasetBundle, TaskData, TaskInfo
from mtnas.data.datasets._common import check_int, check_seed, check_total, streams
from mtnas.data.datasets._digits import digit_images, digit_targets, split_pools
from mtnas.data.datasets._registry import DATASETS

__all__ = ["MULTI_DIGITS_TASKS", "make_multi_digits"]

_SIDES = ("left", "right")

MULTI_DIGITS_TASKS: tuple[TaskInfo, ...] = tuple(
    info
    for side in _SIDES
    for info in (
        TaskInfo(f"{side}_digit", "classification", 10, f"class of the {side} digit"),
        TaskInfo(f"{side}_parity", "classification", 2, f"{side} digit is odd (1) or even (0)"),
        TaskInfo(f"{side}_ge5", "classification", 2, f"{side} digit is >= 5 (1) or not (0)"),
    )
)


@DATASETS.register("multi_digits")
def make_multi_digits(*, n_train: int = 3000, n_val: int = 1000, n_test: int = 1000, seed: int = 0) -> DatasetBundle:
    """Pairs of digits: inputs (N, 1, 8, 16) float32 in [0, 1], six classification tasks.

    Args:
        n_train, n_val, n_test: samples per split. Both digits of a sample come from the split's own
            pool of source images (see ``split_pools``), drawn uniformly with replacement.
        seed: fixes the pools and every sample.
    """
    sizes = {
        split: check_int("multi_digits", f"n_{split}", n, minimum=1)
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test))
    }
    seed = check_seed("multi_digits", seed)
    check_total("multi_digits", sum(sizes.values()) * (8 * 16 + 6))
    images, labels = digit_images()
    pools = split_pools(seed)._asdict()
    rngs = streams(seed, tuple(sizes))
    splits = {}
    for split, n in sizes.items():
        source = rngs[split].choice(pools[split], size=(n, 2))  # (N, 2): left and right image index
        inputs = np.concatenate([images[source[:, 0]], images[source[:, 1]]], axis=2)[:, None]  # (N, 1, 8, 16)
        targets = {
            f"{side}_{key}": torch.from_numpy(value)
            for i, side in enumerate(_SIDES)
            for key, value in digit_targets(labels[source[:, i]]).items()
        }
        splits[split] = TaskData(torch.from_numpy(inputs), targets)
    return DatasetBundle(**splits, tasks=MULTI_DIGITS_TASKS)
