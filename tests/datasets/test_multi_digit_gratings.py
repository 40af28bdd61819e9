"""``multi_digit_gratings``: two digits from the split's pool side by side, one grating over both."""

from __future__ import annotations

import numpy as np
import pytest

from mtnas.data.datasets import make_multi_digit_gratings
from mtnas.data.datasets._digits import digit_images, split_pools
from mtnas.data.datasets._multi_digit_gratings import DIGITS, GRATINGS, LEFT, RIGHT

SIZES = {"n_train": 300, "n_val": 100, "n_test": 100}


def _sources(halves: np.ndarray) -> np.ndarray:
    """Index of the sklearn digit each (N, 8, 8) half is, by exact pixels."""
    by_pixels = {image.tobytes(): i for i, image in enumerate(digit_images()[0])}
    return np.array([by_pixels[h.tobytes()] for h in halves])


@pytest.mark.parametrize("seed", [0, 5])
def test_without_the_grating_the_halves_are_the_labelled_digits_of_the_split_pool(seed: int) -> None:
    bundle = make_multi_digit_gratings(**SIZES, seed=seed, amplitude=0.0)
    pools = split_pools(seed)._asdict()
    labels = digit_images()[1]
    for split in ("train", "val", "test"):
        data = getattr(bundle, split)
        assert tuple(data.inputs.shape[1:]) == (1, 8, 16)
        for side, half in (("left", slice(0, 8)), ("right", slice(8, 16))):
            source = _sources(data.inputs[:, 0, :, half].numpy())
            assert set(source) <= set(pools[split])
            assert np.array_equal(data.targets[f"{side}_digit"].numpy(), labels[source])
            assert np.array_equal(data.targets[f"{side}_parity"].numpy(), labels[source] % 2)


def test_the_grating_spans_both_digits_and_only_the_pixels_change() -> None:
    plain = make_multi_digit_gratings(**SIZES, seed=2, amplitude=0.0).train
    lined = make_multi_digit_gratings(**SIZES, seed=2, amplitude=0.6).train
    for name, target in plain.targets.items():
        assert np.array_equal(target.numpy(), lined.targets[name].numpy())
    residual = (lined.inputs - plain.inputs)[:, 0].numpy()  # (N, 8, 16)
    ptp = np.ptp(residual.reshape(len(residual), -1), axis=1)
    assert ptp.max() <= 0.6 + 1e-5 and ptp.min() > 0.3
    for half in (slice(0, 8), slice(8, 16)):  # every sample's grating covers each digit
        assert np.ptp(residual[:, :, half].reshape(len(residual), -1), axis=1).min() > 0.2
    # vertical stripes (orientation 0) are constant down each column, horizontal ones along each row
    targets = {k: v.numpy() for k, v in lined.targets.items()}
    vertical, horizontal = residual[targets["orientation"] == 0], residual[targets["orientation"] == 2]
    assert np.allclose(vertical, vertical[:, :1, :], atol=1e-5)
    assert np.allclose(horizontal, horizontal[:, :, :1], atol=1e-5)


def test_planted_groups_are_digits_then_gratings_and_the_digits_are_left_and_right() -> None:
    bundle = make_multi_digit_gratings(n_train=1, n_val=1, n_test=1)
    assert bundle.planted_groups == (DIGITS, GRATINGS)
    assert DIGITS == LEFT + RIGHT
    assert [t.name for t in bundle.tasks] == [*DIGITS, *GRATINGS]
