"""Checks on dataset arguments and the seeded random streams the built-in datasets draw from."""

from __future__ import annotations

import math
import numbers

import numpy as np

from mtnas.core import MAX_SEED, MtnasError, short_repr

__all__ = ["MAX_COUNT", "MAX_VALUES", "check_float", "check_int", "check_seed", "check_total", "streams"]

#: The largest integer argument of a built-in dataset (a size, a count) unless it says otherwise.
MAX_COUNT = 10_000_000
#: The most values a built-in dataset generates in all (inputs and targets): 8 GiB of float32.
MAX_VALUES = 2**31


def check_int(dataset: str, name: str, value: object, *, minimum: int, maximum: int = MAX_COUNT) -> int:
    """Return ``value`` if it is an int in ``minimum..maximum``; raise MtnasError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise MtnasError(f"dataset {dataset!r}: {name} must be an integer, got {short_repr(value)}")
    if value < minimum:
        raise MtnasError(f"dataset {dataset!r}: {name} must be >= {minimum}, got {short_repr(value)}")
    if value > maximum:
        raise MtnasError(f"dataset {dataset!r}: {name} must be <= {maximum}, got {short_repr(value)}")
    return int(value)


def check_seed(dataset: str, seed: object) -> int:
    """Return ``seed`` if it is an int in ``0..MAX_SEED``; raise MtnasError otherwise."""
    return check_int(dataset, "seed", seed, minimum=0, maximum=MAX_SEED)


def check_float(dataset: str, name: str, value: object, *, minimum: float) -> float:
    """Return ``value`` as a float if it is a finite real number >= ``minimum``; raise MtnasError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MtnasError(f"dataset {dataset!r}: {name} must be a number, got {short_repr(value)}")
    if not (value >= minimum and math.isfinite(value)):  # also rejects NaN
        raise MtnasError(f"dataset {dataset!r}: {name} must be a finite number >= {minimum}, got {short_repr(value)}")
    return float(value)


def check_total(dataset: str, values: int) -> None:
    """Raise MtnasError when a dataset would generate more than :data:`MAX_VALUES` values."""
    if values > MAX_VALUES:
        raise MtnasError(f"dataset {dataset!r}: these sizes make {values:,} values, more than mtnas generates "
                         f"({MAX_VALUES:,}); lower n_train, n_val, n_test or the image size")


def streams(seed: int, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    """Independent generators, one per name, all derived from ``seed``.

    Each split draws from its own stream, so changing ``n_train`` leaves the val and test samples
    as they were.
    """
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}
