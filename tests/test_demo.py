"""``mtnas demo`` end to end on a tiny budget: the files it promises exist and parse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtnas.architecture import Architecture
from mtnas.cli import main


def test_demo_writes_its_files(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path), "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert set(summary["trees"]) == {"all-shared", "found by search", "planted split @1", "independent"}
    assert all("delta_m_test" in t for t in summary["trees"].values())
    arch = Architecture.load(tmp_path / "arch.json")
    assert arch.tree.describe() == summary["found_tree"] and arch.tree.describe() in out
    assert arch.resolved_space().is_resolved
    routing = np.load(tmp_path / "routing.npz")
    assert routing["heads"].shape[0] == 2 and list(routing["tasks"]) == list(arch.tree.tasks)
