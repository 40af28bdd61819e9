"""Shared fixtures: a tiny search space that trains in seconds, and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from mtnas.space import BUILTIN_DIR

torch.set_num_threads(1)  # tests run in parallel workers; one thread each is fastest on 2 cores
os.environ.setdefault("MTNAS_THREADS", "1")  # and what mtnas sets (a search, the CLI) and passes to its workers
# Tests never download: a space with `pretrained: true` (a mutated one, say) reads only the Hugging Face
# cache. Set before timm imports huggingface_hub, which reads it once.
os.environ["HF_HUB_OFFLINE"] = "1"
try:  # timm's import takes seconds: paid here once, not inside a test with a deadline
    from mtnas.nn import import_timm

    import_timm()
except Exception:  # not installed: tests/test_timm.py says so (and fails when CI=true)
    pass


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def write_tiny_space(path: Path, base: str = "digit_gratings", **training: object) -> Path:
    """A copy of a built-in space with a few hundred samples and one epoch."""
    data = yaml.safe_load((BUILTIN_DIR / f"{base}.yaml").read_text())
    sizes = {"n_train": 128, "n_val": 64, "n_test": 64}
    data["dataset"]["args"].update(sizes)
    data["training"].update({"epochs": 1, "batch_size": 64, **training})
    data["name"] = f"tiny_{base}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    return write_tiny_space(tmp_path / "tiny.yaml")
