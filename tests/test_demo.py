"""``mtnas demo`` end to end on a tiny budget: the files it promises exist and parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtnas.cli import main
from mtnas.model import load_weights
from mtnas.tree import Architecture


def test_demo_searches_exports_retrains_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--trials", "3", "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo.json").read_text())
    files = {k: Path(v) for k, v in summary["files"].items()}
    arch = Architecture.load(files["arch"])
    assert arch.tree.describe() == summary["found_tree"] and arch.tree.describe() in printed
    assert arch.provenance["trial"] == summary["best_trial"] == 2  # the one differentiable trial
    assert files["tree_png"].read_bytes()[:4] == b"\x89PNG"
    assert set(load_weights(files["weights"], tree_key=arch.tree.key))  # the weights its search trained
    final = json.loads((files["retrain"] / "final.json").read_text())
    assert final["tree_key"] == arch.tree.key
    assert final["delta_m"]["test"] == pytest.approx(summary["delta_m_test"]["found"])
    assert f"{summary['delta_m_test']['all-shared']:+.2f}%" in printed  # both delta-m are printed
    page = files["report"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    for label in ("run folder", "report", "tree picture", "architecture", "retrained model"):
        assert label in printed
    # a second demo replaces the first one's folder
    assert main(["demo", "--out", str(out), "--epochs", "1", "--trials", "3", "--device", "cpu", "--quiet"]) == 0
    assert "replacing the previous demo" in capsys.readouterr().out


def test_demo_leaves_a_folder_that_is_not_a_demo_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path / "mine"), "--epochs", "1", "--quiet"]) == 2
    assert "was not written by 'mtnas demo'" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
