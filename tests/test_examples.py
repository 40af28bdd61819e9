"""The README's worked example of a user's own dataset runs, and the README shows it verbatim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtnas.cli import main
from mtnas.model import arch_space
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


def test_readme_shows_the_example_backbone() -> None:
    readme = (ROOT / "README.md").read_text()
    body = (ROOT / "examples" / "my_backbone.py").read_text().split('"""', 2)[2].strip()
    assert body in readme


def test_a_users_backbone_builds_trains_and_rebuilds_from_arch_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from mtnas.model import BranchedNet
    from mtnas.tree import Architecture, BranchingTree

    monkeypatch.chdir(ROOT)
    space, _ = load_resolved("examples/my_backbone_space.yaml")
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {2: [["total", "spread"], ["sign"]]})
    model = BranchedNet.from_space(tree, space)
    assert type(model.layers[0][0]).__name__ == "ResidualBlock"
    Architecture(tree, space.to_dict()).save(tmp_path / "arch.json")
    rebuilt = Architecture.load(tmp_path / "arch.json")
    again = BranchedNet.from_space(rebuilt.tree, arch_space(rebuilt))
    assert [n for n, _ in again.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert main(["train", "examples/my_backbone_space.yaml", "--tree", str(tmp_path / "arch.json"),
                 "--epochs", "1", "--json", "--quiet"]) == 0
    assert set(json.loads(capsys.readouterr().out)["test"]) == {"total", "spread", "sign"}


@pytest.mark.parametrize("name,message", [
    ("examples.my_backbone:nothing", "'examples.my_backbone' has no attribute 'nothing'"),
    ("examples.my_dataset:make", "returned a DatasetBundle, expected a mtnas.nn.BackboneType"),
    ("examples.my_backbone:ResidualLayer", "failed: TypeError"),
    ("examples.no_such_module:f", "cannot import module 'examples.no_such_module'"),
])
def test_a_bad_backbone_factory_is_a_clear_error(name: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mtnas.core import MtnasError
    from mtnas.space import space_from_dict

    monkeypatch.chdir(ROOT)
    data = {"dataset": {"factory": "examples.my_dataset:make"}, "backbone": {"name": name, "layers": [{"width": 8}]},
            "tasks": ["total"]}
    with pytest.raises(MtnasError, match="backbone.name") as info:
        space_from_dict(data)
    assert message in str(info.value)
