"""arch.json: exact round-trip, key order, format and version checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtnas.architecture import ARCH_FORMAT, Architecture
from mtnas.errors import MtnasError
from mtnas.space import load_resolved
from mtnas.tree import BranchingTree


def _arch() -> Architecture:
    space, _ = load_resolved("digit_gratings")
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {1: [("digit", "parity", "ge5"), ("orientation", "frequency", "diagonal")]})
    return Architecture(tree, space.to_dict(), {"params": 1, "flops": 2}, {"delta_m": 1.5}, {"run": "x", "trial": 3})


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    arch = _arch()
    path = arch.save(tmp_path / "arch.json")
    data = json.loads(path.read_text())
    assert list(data) == ["format", "version", "tasks", "partitions", "space", "cost", "metrics", "provenance"]
    assert data["format"] == ARCH_FORMAT and data["version"] == 1
    again = Architecture.load(path)
    assert again.to_dict() == arch.to_dict()
    assert again.resolved_space() == arch.resolved_space()


def test_wrong_format_and_newer_version(tmp_path: Path) -> None:
    data = _arch().to_dict()
    with pytest.raises(MtnasError, match="format is 'other', expected 'mtnas-architecture'"):
        Architecture.from_dict({**data, "format": "other"})
    with pytest.raises(MtnasError, match=r"version 2 is newer than this mtnas understands \(1\); upgrade mtnas"):
        Architecture.from_dict({**data, "version": 2})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MtnasError, match=r"bad\.json: not valid JSON \(line 1"):
        Architecture.load(bad)
