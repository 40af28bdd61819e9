"""The built-in search spaces for the tests that run over all of them (not a test module itself).

Spaces of real benchmarks (nyuv2, cityscapes, celeba) read a folder the user sets; where it is not
on disk, ``load_builtin`` skips the test. tests/datasets/test_real_loaders.py runs them on fakes.
"""

from __future__ import annotations

import pytest

from mtnas.data import DatasetBundle
from mtnas.data.datasets import DataNotFoundError
from mtnas.space import BUILTIN_DIR, SearchSpace, load_resolved

BUILTINS = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_builtin(name: str) -> tuple[SearchSpace, DatasetBundle]:
    """``load_resolved(name)``, or skip the test when the space's data is not on disk."""
    try:
        return load_resolved(name)
    except DataNotFoundError as exc:
        pytest.skip(f"space {name!r} needs its data: {exc}")
