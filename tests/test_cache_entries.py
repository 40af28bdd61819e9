"""Cache entries are checked before use: a damaged or edited one is never a result.

Every kind of damage a cached result can suffer (an accuracy written by hand, a list where a
mapping belongs, a metric that is text or NaN, a renamed task, a wrong checksum, a truncated file)
is read as "not cached": one DamagedEntryWarning naming the file and what is wrong, and the result
trained again (baselines, trained trees, pairs' deltas). An entry of an older mtnas (no checksum)
is made again without a warning.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from mtnas.core import DamagedEntryWarning, cache_dir, read_checked, write_checked
from mtnas.model import Cost
from mtnas.space import load_resolved
from mtnas.train import TreeResult, compute_baselines, proxy_space, read_result, write_result
from mtnas.tree import BranchingTree
from tests.conftest import write_tiny_space

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return load_resolved(write_tiny_space(tmp_path_factory.mktemp("space") / "tiny.yaml"))


def _result(space: Any) -> TreeResult:
    metrics = {t.name: {m: 0.5 for m in t.metrics} for t in space.tasks}
    tree = BranchingTree.all_shared(space.task_names, space.num_layers)
    return TreeResult(tree, Cost(100, 2000), metrics, {t: dict(m) for t, m in metrics.items()}, 1.5)


def _edit_content(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """Damage that keeps a valid checksum: the content itself is wrong (what a broken writer leaves)."""

    def damage(path: Path) -> None:
        content = json.loads(path.read_text())["content"]
        change(content)
        write_checked(path, content)

    return damage


def _edit_file(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """Damage by hand: the stored JSON edited, its checksum left as it was."""

    def damage(path: Path) -> None:
        stored = json.loads(path.read_text())
        change(stored)
        path.write_text(json.dumps(stored))

    return damage


def _first(content: dict) -> str:
    return next(iter(content["val"]))


#: damage kind -> (what it does to the file, a fragment of the warning)
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "accuracy edited to 1.0": (_edit_file(lambda s: s["content"]["val"]["digit"].update(accuracy=1.0)), "checksum"),
    "bad checksum": (_edit_file(lambda s: s.update(sha256="0" * 64)), "checksum"),
    "truncated file": (lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]), "not valid JSON"),
    "not JSON at all": (lambda p: p.write_text("{not json"), "not valid JSON"),
    "a list for the entry": (lambda p: write_checked(p, [1, 2]), "a list, expected a mapping"),
    "a list for a task's metrics": (_edit_content(lambda c: c["val"].update(digit=[0.9])),
                                    "val.digit is a list, expected a mapping"),
    "accuracy as text": (_edit_content(lambda c: c["val"]["digit"].update(accuracy="0.9")),
                         "val.digit.accuracy is '0.9', not a finite number"),
    "accuracy NaN": (_edit_content(lambda c: c["val"]["digit"].update(accuracy=math.nan)),
                     "val.digit.accuracy is nan, not a finite number"),
    "accuracy infinite": (_edit_content(lambda c: c["test"]["digit"].update(accuracy=math.inf)),
                          "not a finite number"),
    "accuracy a bool": (_edit_content(lambda c: c["val"]["digit"].update(accuracy=True)), "not a finite number"),
    "a task renamed": (_edit_content(lambda c: c["val"].update(digits=c["val"].pop("digit"))), "holds tasks"),
    "a task missing": (_edit_content(lambda c: c["test"].pop("digit")), "holds tasks"),
    "a metric missing": (_edit_content(lambda c: c["val"]["digit"].pop("accuracy")), "lacks the metric accuracy"),
    "the tree of other tasks": (_edit_content(lambda c: c.update(tree={"tasks": ["x"], "partitions": [[["x"]]]})),
                                "holds tasks"),
    "a cost that is text": (_edit_content(lambda c: c["cost"].update(flops="many")), "cost is"),
    "no seconds": (_edit_content(lambda c: c.pop("seconds")), "seconds"),
    "another envelope": (lambda p: p.write_text(json.dumps({"format": "other", "sha256": "x", "content": {}})),
                         "not a checked entry"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_result_entry_is_not_used_and_the_warning_names_the_file(kind: str, resolved: tuple,
                                                                           tmp_path: Path) -> None:
    space, _ = resolved
    path = tmp_path / "entry.json"
    write_result(path, _result(space))
    assert read_result(path, space) == _result(space)  # sound: read back as written
    damage, reason = DAMAGE[kind]
    damage(path)
    with pytest.warns(DamagedEntryWarning) as caught:
        assert read_result(path, space) is None
    (message,) = [str(w.message) for w in caught]
    assert str(path) in message and reason in message and "made again" in message, message


@pytest.mark.parametrize("stored", [None, "older"])
def test_a_missing_entry_or_one_of_an_older_mtnas_is_made_again_quietly(stored: str | None, resolved: tuple,
                                                                        tmp_path: Path) -> None:
    space, _ = resolved
    path = tmp_path / "entry.json"
    if stored == "older":  # written before entries carried a checksum
        path.write_text(json.dumps(_result(space).to_dict()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_result(path, space) is None


def test_read_checked_hands_the_parser_the_content_and_names_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_checked(path, {"a": [1, 2]})
    assert read_checked(path, lambda c: c["a"], "thing") == [1, 2]
    with pytest.warns(DamagedEntryWarning, match=r"x\.json: damaged thing, not used \(KeyError: 'b'\)"):
        assert read_checked(path, lambda c: c["b"], "thing") is None


@pytest.mark.parametrize("value", ["", None])
def test_the_cache_folder_is_never_the_current_one(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("MTNAS_CACHE_DIR")
    else:
        monkeypatch.setenv("MTNAS_CACHE_DIR", value)
    assert cache_dir() == Path.home() / ".cache" / "mtnas"


def test_a_relative_cache_folder_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MTNAS_CACHE_DIR", "c")
    assert cache_dir() == tmp_path / "c"


def test_edited_baselines_are_trained_again_not_believed(resolved: tuple) -> None:
    space, bundle = resolved
    proxy = proxy_space(space)
    first = compute_baselines(proxy, bundle, device=CPU, seed=0)
    (path,) = (cache_dir() / "baselines").glob("*.json")
    stored = json.loads(path.read_text())
    stored["content"]["all_shared"]["val"]["digit"]["accuracy"] = 1.0  # the edit that made all-shared +2061%
    path.write_text(json.dumps(stored))
    with pytest.warns(DamagedEntryWarning, match="checksum"):
        again = compute_baselines(proxy, bundle, device=CPU, seed=0)
    assert again.all_shared.val["digit"]["accuracy"] == pytest.approx(first.all_shared.val["digit"]["accuracy"])
    assert again.all_shared.val["digit"]["accuracy"] != 1.0
    with warnings.catch_warnings():  # trained again, it was written anew: read back without a warning
        warnings.simplefilter("error", DamagedEntryWarning)
        assert compute_baselines(proxy, bundle, device=CPU, seed=0).to_dict() == again.to_dict()


@pytest.mark.parametrize("edit", [
    lambda c: c["single_task"].update(digits=c["single_task"].pop("digit")),  # a renamed task
    lambda c: c["single_task"].pop("digit"),  # a task missing
    lambda c: c.update(seed=5),  # another seed's
    lambda c: c["all_shared"].update(tree=c["single_task"]["digit"]["tree"]),  # not the all-shared tree
], ids=["renamed task", "missing task", "other seed", "not all-shared"])
def test_baselines_of_other_tasks_seeds_or_trees_are_not_used(edit: Callable[[dict], None], resolved: tuple) -> None:
    space, bundle = resolved
    proxy = proxy_space(space)
    compute_baselines(proxy, bundle, device=CPU, seed=0)
    (path,) = (cache_dir() / "baselines").glob("*.json")
    content = json.loads(path.read_text())["content"]
    edit(content)
    write_checked(path, content)
    with pytest.warns(DamagedEntryWarning, match=str(path)):
        compute_baselines(proxy, bundle, device=CPU, seed=0)


def test_an_edited_trained_tree_is_trained_again_not_the_fronts_pick(resolved: tuple) -> None:
    """The edit that made a trial +243%: a search or trial reads the tree's result from the evidence."""
    from mtnas.search import Evidence, Unit

    space, bundle = resolved
    unit = Unit(BranchingTree.independent(space.task_names, space.num_layers), space.training.epochs, 0)
    (first,) = Evidence(space, bundle).obtain([unit])
    (path,) = (cache_dir() / "evidence").rglob("*.json")
    stored = json.loads(path.read_text())
    for metrics in stored["content"]["result"]["val"].values():
        metrics.update({m: 1.0 for m in metrics})
    path.write_text(json.dumps(stored))
    evidence = Evidence(space, bundle)
    with pytest.warns(DamagedEntryWarning, match=str(path)):
        (again,) = evidence.obtain([unit])
    assert evidence.trained == 1 and again.result.val == first.result.val
