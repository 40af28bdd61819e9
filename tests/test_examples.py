"""The README's worked examples of a user's own dataset and backbone run (loaded on purpose, with
--plugins), and the README shows them verbatim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtnas.cli import main
from mtnas.core import PLUGINS_ENV, load_plugins
from mtnas.model import arch_space
from mtnas.space import load_resolved

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = "examples.my_dataset,examples.my_backbone"


@pytest.fixture(autouse=True)
def _plugins_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "")  # what --plugins leaves for child processes ends with the test


def test_readme_shows_the_example_factory() -> None:
    readme = (ROOT / "README.md").read_text()
    body = (ROOT / "examples" / "my_dataset.py").read_text().split('"""', 2)[2].strip()
    assert body in readme


def test_factory_space_trains_end_to_end(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(ROOT)
    load_plugins(["examples.my_dataset"])
    space, bundle = load_resolved("examples/my_space.yaml")
    assert [t.kind for t in space.tasks] == ["regression", "regression", "classification"]
    assert bundle.input_shape == (16,)
    assert main(["--plugins", "examples.my_dataset", "train", "examples/my_space.yaml", "--tree", "independent",
                 "--epochs", "1", "--json", "--quiet"]) == 0
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
    load_plugins(PLUGINS.split(","))
    space, _ = load_resolved("examples/my_backbone_space.yaml")
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {2: [["total", "spread"], ["sign"]]})
    model = BranchedNet.from_space(tree, space)
    assert type(model.layers[0][0]).__name__ == "ResidualBlock"
    Architecture(tree, space.to_dict()).save(tmp_path / "arch.json")
    rebuilt = Architecture.load(tmp_path / "arch.json")
    again = BranchedNet.from_space(rebuilt.tree, arch_space(rebuilt))
    assert [n for n, _ in again.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert main(["--plugins", PLUGINS, "train", "examples/my_backbone_space.yaml", "--tree", str(tmp_path / "arch.json"),
                 "--epochs", "1", "--json", "--quiet"]) == 0
    assert set(json.loads(capsys.readouterr().out)["test"]) == {"total", "spread", "sign"}


def test_the_older_path_spelling_names_a_registered_function(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtnas.space import space_from_dict

    monkeypatch.chdir(ROOT)
    load_plugins(PLUGINS.split(","))
    data = {"dataset": {"factory": "examples.my_dataset:make"},
            "backbone": {"name": "examples.my_backbone:residual_mlp", "layers": [{"width": 8}]}, "tasks": ["total"]}
    space, _ = load_resolved(space_from_dict(data))
    assert space.input_shape == (16,)


@pytest.mark.parametrize("name,message", [
    ("examples.my_backbone:nothing", "unknown backbone 'examples.my_backbone:nothing'"),
    ("examples.my_backbone:ResidualLayer", "unknown backbone 'examples.my_backbone:ResidualLayer'"),
    ("examples.no_such_module:f", "unknown backbone 'examples.no_such_module:f'"),
    ("os:abort", "unknown backbone 'os:abort'; valid: conv, mlp, resnet"),
])
def test_a_backbone_path_that_is_not_registered_is_refused(name: str, message: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mtnas.core import MtnasError
    from mtnas.space import space_from_dict

    monkeypatch.chdir(ROOT)
    data = {"dataset": {"name": "my_dataset"}, "backbone": {"name": name, "layers": [{"width": 8}]}, "tasks": ["total"]}
    with pytest.raises(MtnasError, match=r"^space\.backbone\.name: ") as info:
        space_from_dict(data)
    assert message in str(info.value) and "@mtnas.register_backbone('NAME')" in str(info.value)


@pytest.mark.parametrize("made,message", [
    ("examples.my_dataset:make", "its factory returned a DatasetBundle, expected a mtnas.nn.BackboneType"),
    ("examples.my_backbone:ResidualLayer", "its factory failed: TypeError"),
])
def test_a_registered_backbone_factory_that_goes_wrong_is_a_clear_error(
    made: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from mtnas.core import MtnasError
    from mtnas.nn import register_backbone
    from mtnas.space import space_from_dict
    from tests.datasets._tiny_factory import isolate_plugins

    isolate_plugins(monkeypatch)
    monkeypatch.chdir(ROOT)
    module, _, attr = made.partition(":")
    register_backbone("bad_one")(getattr(importlib.import_module(module), attr))
    data = {"dataset": {"name": "my_dataset"}, "backbone": {"name": "bad_one", "layers": [{"width": 8}]},
            "tasks": ["total"]}
    with pytest.raises(MtnasError, match="backbone.name") as info:
        space_from_dict(data)
    assert message in str(info.value)
