"""Checks on dataset arguments and the seeded random streams the built-in datasets draw from."""

from __future__ import annotations

import numbers

import numpy as np

from mtnas.core import MtnasError

__all__ = ["check_float", "check_int", "streams"]


def check_int(dataset: str, name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``; raise MtnasError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise MtnasError(f"dataset {dataset!r}: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise MtnasError(f"dataset {dataset!r}: {name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(dataset: str, name: str, value: object, *, minimum: float) -> float:
    """Return ``value`` as a float if it is a real number >= ``minimum``; raise MtnasError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MtnasError(f"dataset {dataset!r}: {name} must be a number, got {value!r}")
    if not value >= minimum:  # also rejects NaN
        raise MtnasError(f"dataset {dataset!r}: {name} must be >= {minimum}, got {value}")
    return float(value)


def streams(seed: int, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    """Independent generators, one per name, all derived from ``seed``.

    Each split draws from its own stream, so changing ``n_train`` leaves the val and test samples
    as they were.
    """
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}
