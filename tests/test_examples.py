"""The README's worked example of a user's own dataset runs, and the README shows it verbatim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtnas.cli import main
from mtnas.space import load_resolved

ROOT = Path(__file__).resolve().parent.parent


def test_readme_shows_the_example_factory() -> None:
    readme = (ROOT / "README.md").read_text()
    body = (ROOT / "examples" / "my_dataset.py").read_text().split('"""', 2)[2].strip()
    assert body in readme


def test_factory_space_trains_end_to_end(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(ROOT)
    space, bundle = load_resolved("examples/my_space.yaml")
    assert [t.kind for t in space.tasks] == ["regression", "regression", "classification"]
    assert bundle.input_shape == (16,)
    assert main(["train", "examples/my_space.yaml", "--tree", "independent", "--epochs", "1", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["test"]) == {"total", "spread", "sign"}
    assert report["test"]["total"]["abs_err"] > 0
