"""The digit pools and ``multi_digits``: disjoint sources per split, labels that match the images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtnas.data.datasets import make_multi_digits
from mtnas.data.datasets._digits import NUM_IMAGES, digit_images, split_pools

SPLITS = ("train", "val", "test")


def test_digit_images_are_the_sklearn_digits_scaled_to_unit_range() -> None:
    images, labels = digit_images()
    assert images.shape == (NUM_IMAGES, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert sorted(np.unique(labels)) == list(range(10))


def test_pools_are_disjoint_and_cover_every_image() -> None:
    pools = split_pools(0)
    assert [len(p) for p in pools] == [1078, 359, 360]
    assert not set(pools.train) & set(pools.val)
    assert not set(pools.train) & set(pools.test)
    assert not set(pools.val) & set(pools.test)
    assert sorted(np.concatenate(pools)) == list(range(NUM_IMAGES))


def test_pools_depend_on_the_seed_only() -> None:
    assert all(np.array_equal(a, b) for a, b in zip(split_pools(4), split_pools(4)))
    assert not np.array_equal(split_pools(4).train, split_pools(5).train)


def source_indices(patches: torch.Tensor) -> np.ndarray:
    """Index of the sklearn image each (N, 8, 8) patch is, found by its exact pixels."""
    images, _ = digit_images()
    by_pixels = {image.tobytes(): i for i, image in enumerate(images)}
    assert len(by_pixels) == NUM_IMAGES  # no two source images are identical
    return np.array([by_pixels[p.numpy().tobytes()] for p in patches])


@pytest.mark.parametrize("seed", [0, 7])
def test_each_split_draws_both_digits_from_its_own_pool(seed: int) -> None:
    bundle = make_multi_digits(n_train=300, n_val=100, n_test=100, seed=seed)
    pools = split_pools(seed)._asdict()
    used = {}
    for split in SPLITS:
        inputs = getattr(bundle, split).inputs
        assert inputs.shape[1:] == (1, 8, 16)
        left, right = source_indices(inputs[:, 0, :, :8]), source_indices(inputs[:, 0, :, 8:])
        used[split] = set(left) | set(right)
        assert used[split] <= set(pools[split])
    assert not used["train"] & used["val"] and not used["train"] & used["test"] and not used["val"] & used["test"]


def test_labels_describe_the_digit_on_each_side() -> None:
    _, labels = digit_images()
    data = make_multi_digits(n_train=200, n_val=10, n_test=10, seed=2).train
    for side, cols in (("left", slice(0, 8)), ("right", slice(8, 16))):
        digit = labels[source_indices(data.inputs[:, 0, :, cols])]
        assert np.array_equal(data.targets[f"{side}_digit"].numpy(), digit)
        assert np.array_equal(data.targets[f"{side}_parity"].numpy(), digit % 2)
        assert np.array_equal(data.targets[f"{side}_ge5"].numpy(), digit >= 5)
    assert len(set(data.targets["left_digit"].tolist())) == 10  # every class occurs


def test_inputs_are_in_unit_range() -> None:
    inputs = make_multi_digits(n_train=50, n_val=5, n_test=5).train.inputs
    assert float(inputs.min()) == 0.0 and float(inputs.max()) == 1.0
