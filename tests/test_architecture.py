"""arch.json: exact round-trip, key order, format and version checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtnas.core import MtnasError
from mtnas.model import arch_space
from mtnas.space import load_resolved
from mtnas.tree import ARCH_FORMAT, ARCH_VERSION, Architecture, BranchingTree, InvalidTreeError

KEYS = ["format", "version", "tasks", "partitions", "space", "cost", "metrics", "provenance"]


def _arch() -> Architecture:
    space, _ = load_resolved("digit_gratings")
    groups = [("digit", "parity", "ge5"), ("orientation", "frequency", "diagonal")]
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {1: groups})
    return Architecture(
        tree,
        space.to_dict(),
        cost={"params": 1, "flops": 2},
        metrics={"val": {"digit": {"accuracy": 0.97}}, "delta_m": 1.5},
        provenance={"run": "x", "trial": 3, "mtnas_version": "0.0.0"},
    )


def _small() -> dict:
    return Architecture(BranchingTree.all_shared(("a", "b"), 2), {"name": "s"}).to_dict()


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    arch = _arch()
    path = arch.save(tmp_path / "out" / "arch.json")
    text = path.read_text()
    data = json.loads(text)
    assert list(data) == KEYS
    assert data["format"] == ARCH_FORMAT == "mtnas-architecture" and data["version"] == ARCH_VERSION == 1
    assert data["tasks"] == list(arch.tree.tasks) and data["partitions"] == arch.tree.to_dict()["partitions"]
    assert text == json.dumps(arch.to_dict(), indent=2) + "\n"
    again = Architecture.load(path)
    assert again == arch and again.to_dict() == arch.to_dict() == data
    assert again.tree.key == arch.tree.key
    assert arch_space(again) == arch_space(arch)
    assert again.save(tmp_path / "again.json").read_text() == text
    assert [p.name for p in path.parent.iterdir()] == ["arch.json"]  # no temporary file left behind


def test_defaults_and_plain_data() -> None:
    arch = Architecture(BranchingTree.all_shared(("a",), 1), {"blocks": (1, 2)})
    assert arch.to_dict()["cost"] == {} and arch.metrics == {} and arch.provenance == {}
    assert arch.space == {"blocks": [1, 2]}  # stored as JSON data, so a file round trip is exact
    arch.to_dict()["space"]["blocks"].append(3)
    assert arch.space == {"blocks": [1, 2]}  # to_dict hands out a copy
    with pytest.raises(TypeError, match="Architecture.metrics is not plain JSON data"):
        Architecture(BranchingTree.all_shared(("a",), 1), {}, metrics={"x": object()})
    with pytest.raises(TypeError, match="Architecture.space must be a mapping"):
        Architecture(BranchingTree.all_shared(("a",), 1), [])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"format": "other"},
            r"^architecture: not an mtnas architecture file: format is 'other', expected 'mtnas-architecture'$",
        ),
        ({"format": None}, r"format is None, expected 'mtnas-architecture'"),
        (
            {"version": 2},
            r"^architecture: arch.json version 2 is newer than this mtnas understands \(1\); upgrade mtnas$",
        ),
        ({"version": "1"}, r"bad arch.json version '1', expected an integer >= 1"),
        ({"version": 0}, r"bad arch.json version 0"),
        ({"metric": {}}, r"unknown key 'metric' \(did you mean 'metrics'\?\)"),
        ({"cost": [1, 2]}, r"'cost' must be a JSON object, got list"),
        ({"partitions": [[["a"], ["b"]], [["a", "b"]]]}, r"^architecture: layer 1: group \['a', 'b'\] rejoins"),
    ],
)
def test_bad_records(change: dict, message: str) -> None:
    with pytest.raises(MtnasError, match=message):
        Architecture.from_dict({**_small(), **change})


def test_missing_keys() -> None:
    data = _small()
    del data["format"]
    missing_format = "not an mtnas architecture file: format is missing, expected 'mtnas-architecture'"
    with pytest.raises(MtnasError, match=missing_format):
        Architecture.from_dict(data)
    data = _small()
    del data["space"]
    with pytest.raises(MtnasError, match="missing key 'space'"):
        Architecture.from_dict(data)
    with pytest.raises(MtnasError, match="expected a JSON object, got list"):
        Architecture.from_dict([1, 2])
    data = _small()
    for key in ("cost", "metrics", "provenance"):
        del data[key]
    assert Architecture.from_dict(data).to_dict() == _small()


def test_tree_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({**_small(), "partitions": [[["a"]], [["a"], ["b"]]]}))
    with pytest.raises(InvalidTreeError, match=r"arch\.json: layer 0: tasks \['b'\] are in no group"):
        Architecture.load(path)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "mtnas-architecture",\n  "version": 1,\n  oops}')
    with pytest.raises(MtnasError, match=r"bad\.json: not valid JSON \(line 3, column 3: Expecting property name"):
        Architecture.load(bad)
    with pytest.raises(MtnasError, match=r"nothere\.json: no such architecture file"):
        Architecture.load(tmp_path / "nothere.json")
    with pytest.raises(MtnasError, match="is a directory"):
        Architecture.load(tmp_path)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**_small(), "format": "something-else"}))
    with pytest.raises(MtnasError, match=r"other\.json: not an mtnas architecture file: format is 'something-else'"):
        Architecture.load(other)


def test_a_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = Architecture(BranchingTree.all_shared(("a", "b"), 2), {"name": "old"}).save(tmp_path / "arch.json")
    before = path.read_text()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        Architecture(BranchingTree.independent(("a", "b"), 2), {"name": "new"}).save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["arch.json"]
