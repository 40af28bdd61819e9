"""``--set KEY.PATH=VALUE``: any key of a space, checked like the YAML, with the same key-path errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtnas.cli import main
from mtnas.core import MtnasError
from mtnas.space import load_space
from mtnas.space._overrides import apply_overrides, parse_override


def test_a_dotlist_sets_keys_lists_and_mappings() -> None:
    space = load_space("digit_gratings", overrides=[
        "training.lr=0.01", "dataset.args.root=/data/nyuv2", "backbone.layers[2].channels=32",
        "backbone.layers.1.stride=1", "routing.branching_layers=[1, 2]", "search.pruner=null",
        "description=a copy",
    ])
    assert space.training.lr == 0.01 and space.dataset.args["root"] == "/data/nyuv2"
    assert space.backbone.layers[2].channels == 32 and space.backbone.layers[1].stride == 1
    assert space.routing.branching_layers == (1, 2) and space.search.pruner is None
    assert space.description == "a copy"
    assert load_space("digit_gratings", overrides=["dataset.args={n_train: 10}"]).dataset.args == {"n_train": 10}


def test_the_document_is_copied_and_values_are_yaml() -> None:
    data = {"training": {"epochs": 3}}
    assert apply_overrides(data, ["training.epochs=7", "training.lr=1e-3"]) == {"training": {"epochs": 7, "lr": 0.001}}
    assert data == {"training": {"epochs": 3}}
    assert parse_override("a.b[0].c='007'") == (("a", "b", 0, "c"), "007", "a.b[0].c='007'")


@pytest.mark.parametrize("override, message", [
    ("trainig.lr=1", "digit_gratings: unknown key 'trainig' (did you mean 'training'?); valid keys: "),
    ("training.optimzer=adam", "digit_gratings.training: unknown key 'optimzer' (did you mean 'optimizer'?)"),
    ("training.lr=abc", "digit_gratings.training.lr: expected float, got 'abc' (from --set training.lr=abc)"),
    ("training.epochs=0", "digit_gratings.training.epochs: must be >= 1, got 0 (from --set training.epochs=0)"),
    ("search.ranges.tau0=[5, 1]", "digit_gratings.search.ranges.tau0: low 5.0 is above high 1.0"),
    ("backbone.layers[9].channels=3", "--set backbone.layers[9].channels=3: backbone.layers has 4 entries"),
    ("training.lr.x=1", "--set training.lr.x=1: training.lr is 0.005, not a mapping"),
    ("tasks[0].head=mlp", "--set tasks[0].head=mlp: tasks[0] is 'digit', not a mapping"),
    ("training", "--set 'training': expected KEY.PATH=VALUE, e.g. --set training.lr=0.01"),
    ("a..b=1", "'a..b' is not a key path"),
    ("[0]=1", "a key path starts with a key of the space"),
    ("training.lr=[1", "--set training.lr: line 1, column 3: malformed YAML"),
])
def test_a_bad_override_is_the_error_the_file_would_give(override: str, message: str) -> None:
    with pytest.raises(MtnasError) as info:
        load_space("digit_gratings", overrides=[override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_cli_takes_overrides_on_train(tiny_space: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(tiny_space), "--set", "training.lr=nope", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == ("mtnas: error: tiny.yaml.training.lr: expected float, got 'nope' "
                                               "(from --set training.lr=nope)")
    assert main(["train", str(tiny_space), "--set", "dataset.args.n_train=96", "--json", "--quiet"]) == 0
