"""scikit-learn's 1,797 bundled 8x8 handwritten digits, split into disjoint train/val/test pools.

Both digit datasets draw every sample of a split from that split's pool only, so no source image
appears in two splits.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["NUM_IMAGES", "POOL_FRACTIONS", "DigitPools", "digit_images", "digit_targets", "split_pools", "upsample"]

#: Images in ``sklearn.datasets.load_digits()``.
NUM_IMAGES = 1797
#: Share of the images in the train, val and test pools.
POOL_FRACTIONS = (0.6, 0.2, 0.2)


class DigitPools(NamedTuple):
    """Indices into ``digit_images()``, one disjoint array per split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All digits: images (1797, 8, 8) float32 in [0, 1] (pixel value / 16) and labels (1797,) int64.

    Cached and read-only; copy before writing.
    """
    from sklearn.datasets import load_digits  # heavy import, needed only by the digit datasets

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def split_pools(seed: int) -> DigitPools:
    """Split the 1,797 image indices by a seeded permutation into pools of 60/20/20 %."""
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xD161,))).permutation(NUM_IMAGES)
    n_train = round(POOL_FRACTIONS[0] * NUM_IMAGES)
    n_val = round(POOL_FRACTIONS[1] * NUM_IMAGES)
    return DigitPools(
        np.sort(order[:n_train]), np.sort(order[n_train : n_train + n_val]), np.sort(order[n_train + n_val :])
    )


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize (no corner alignment) of (N, h, w) images to (N, size, size); stays in [0, 1]."""
    x = torch.tensor(np.asarray(images, dtype=np.float32))[:, None]  # (N, 1, h, w), a copy
    out = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return out[:, 0].numpy()


def digit_targets(digits: np.ndarray) -> dict[str, np.ndarray]:
    """The three labels of a digit: class (10), parity (0 even, 1 odd) and ge5 (1 if digit >= 5)."""
    return {"digit": digits, "parity": digits % 2, "ge5": (digits >= 5).astype(np.int64)}
