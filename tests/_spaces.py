"""The built-in search spaces for the tests that run over all of them (not a test module itself).

Spaces of real benchmarks (nyuv2, cityscapes, celeba) read a folder the user sets; where it is not
on disk, ``load_builtin`` skips the test. tests/datasets/test_real_loaders.py runs them on fakes.
"""

from __future__ import annotations

import os

import pytest

from mtnas.core import ConfigError
from mtnas.data import DatasetBundle
from mtnas.data.datasets import DataNotFoundError
from mtnas.nn import TIMM_INSTALL
from mtnas.space import BUILTIN_DIR, SearchSpace, load_resolved

BUILTINS = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_builtin(name: str) -> tuple[SearchSpace, DatasetBundle]:
    """``load_resolved(name)``, or skip the test when the space's data is not on disk, or when its
    backbone needs timm and timm is not installed (CI installs it: there the test fails)."""
    try:
        return load_resolved(name)
    except DataNotFoundError as exc:
        pytest.skip(f"space {name!r} needs its data: {exc}")
    except ConfigError as exc:
        if TIMM_INSTALL in str(exc) and os.environ.get("CI") != "true":
            pytest.skip(f"space {name!r} needs timm: {exc}")
        raise
