"""``digit_gratings``: the digit comes from its split's pool, labels relate, the grating is there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtnas.data.datasets import make_digit_gratings
from mtnas.data.datasets._digit_gratings import FREQUENCIES, ORIENTATIONS_DEG
from mtnas.data.datasets._digits import digit_images, split_pools, upsample

SIZES = {"n_train": 400, "n_val": 100, "n_test": 100}


def clean_sources(inputs: torch.Tensor) -> np.ndarray:
    """Index of the sklearn digit each grating-free (N, 1, 16, 16) input is, by exact pixels."""
    clean = upsample(digit_images()[0], 16)
    by_pixels = {image.tobytes(): i for i, image in enumerate(clean)}
    return np.array([by_pixels[x.numpy().tobytes()] for x in inputs[:, 0]])


def test_upsampled_digits_are_16x16_in_unit_range() -> None:
    clean = upsample(digit_images()[0], 16)
    assert clean.shape == (1797, 16, 16)
    assert clean.min() >= 0.0 and clean.max() <= 1.0


@pytest.mark.parametrize("seed", [0, 3])
def test_without_the_grating_each_input_is_a_digit_from_its_split_pool(seed: int) -> None:
    bundle = make_digit_gratings(**SIZES, seed=seed, amplitude=0.0)
    pools = split_pools(seed)._asdict()
    _, labels = digit_images()
    used = {}
    for split in ("train", "val", "test"):
        data = getattr(bundle, split)
        source = clean_sources(data.inputs)
        used[split] = set(source)
        assert used[split] <= set(pools[split])
        assert np.array_equal(data.targets["digit"].numpy(), labels[source])
    assert not used["train"] & used["val"] and not used["train"] & used["test"] and not used["val"] & used["test"]


def test_labels_relate_as_documented() -> None:
    t = {k: v.numpy() for k, v in make_digit_gratings(**SIZES).train.targets.items()}
    assert np.array_equal(t["parity"], t["digit"] % 2)
    assert np.array_equal(t["ge5"], t["digit"] >= 5)
    degrees = np.asarray(ORIENTATIONS_DEG)[t["orientation"]]
    assert np.array_equal(t["diagonal"], np.isin(degrees, (45.0, 135.0)))
    for task, classes in (("digit", 10), ("orientation", 4), ("frequency", 2)):
        assert len(np.unique(t[task])) == classes  # every class occurs


def _residual(seed: int, amplitude: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Input minus the same input without its grating: (N, 16, 16), and the targets."""
    with_grating = make_digit_gratings(**SIZES, seed=seed, amplitude=amplitude).train
    without = make_digit_gratings(**SIZES, seed=seed, amplitude=0.0).train
    for name, target in with_grating.targets.items():  # the amplitude changes the pixels only
        assert torch.equal(target, without.targets[name])
    residual = (with_grating.inputs - without.inputs)[:, 0].numpy().astype(np.float64)
    return residual, {k: v.numpy() for k, v in with_grating.targets.items()}


def test_the_grating_has_the_labelled_orientation_and_frequency() -> None:
    residual, targets = _residual(seed=1, amplitude=0.6)
    spectrum = np.abs(np.fft.fft2(residual))  # (N, 16, 16)
    spectrum[:, 0, 0] = 0.0
    k = np.fft.fftfreq(16) * 16  # cycles per 16 pixels
    peak = spectrum.reshape(len(spectrum), -1).argmax(axis=1)
    ky, kx = k[peak // 16], k[peak % 16]
    angle = np.rad2deg(np.arctan2(ky, kx)) % 180  # a real grating's two peaks agree modulo 180
    angle_error = np.abs((angle[:, None] - np.asarray(ORIENTATIONS_DEG) + 90) % 180 - 90)  # (N, 4)
    radius_error = np.abs(np.hypot(kx, ky)[:, None] - np.asarray(FREQUENCIES))  # (N, 2)
    assert np.array_equal(angle_error.argmin(axis=1), targets["orientation"])
    assert np.array_equal(radius_error.argmin(axis=1), targets["frequency"])


def test_the_grating_peak_to_peak_is_the_amplitude() -> None:
    for amplitude in (0.6, 0.2):
        residual, _ = _residual(seed=2, amplitude=amplitude)
        ptp = np.ptp(residual.reshape(len(residual), -1), axis=1)
        assert ptp.max() <= amplitude + 1e-5
        # A period-4 grating along an axis is sampled every quarter period: at worst 1/sqrt(2) of its range.
        assert ptp.min() >= amplitude / np.sqrt(2) - 1e-5


def test_planted_groups_split_digit_tasks_from_grating_tasks() -> None:
    assert make_digit_gratings(n_train=1, n_val=1, n_test=1).planted_groups == (
        ("digit", "parity", "ge5"),
        ("orientation", "frequency", "diagonal"),
    )
