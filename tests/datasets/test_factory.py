"""A user's own dataset: registered by intent (decorator in a plugin module, or an entry point),
found by name or by its "pkg.module:function" path, and nothing else is ever imported or called."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

from mtnas.core import MtnasError, load_plugins
from mtnas.data import DatasetBundle
from mtnas.data.datasets import build_dataset, register_dataset
from tests.datasets import _tiny_factory
from tests.datasets._tiny_factory import isolate_plugins


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_plugins(monkeypatch)


def test_a_registered_dataset_is_called_with_the_args_by_name_and_by_path() -> None:
    register_dataset("tiny")(_tiny_factory.make)
    bundle = build_dataset("tiny", {"n": 6, "seed": 1})
    assert isinstance(bundle, DatasetBundle)
    assert len(bundle.train) == 6
    assert [t.name for t in bundle.tasks] == ["cls", "reg"]
    by_path = build_dataset(None, {"n": 6, "seed": 1}, factory="tests.datasets._tiny_factory:make")
    assert torch.equal(by_path.train.inputs, bundle.train.inputs)


def test_a_plugin_module_on_the_path_registers_by_decorator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_user_data.py").write_text(
        "import mtnas\n"
        "from tests.datasets._tiny_factory import make as _make\n"
        "@mtnas.register_dataset('user_data')\n"
        "def build(*, n, scale=1.0):\n"
        "    return _make(n=n)\n"
    )
    monkeypatch.chdir(tmp_path)  # load_plugins searches the current directory
    with pytest.raises(MtnasError, match="unknown dataset 'user_data'"):
        build_dataset("user_data", {"n": 3})  # not loaded yet: unknown
    load_plugins(["my_user_data"])
    bundle = build_dataset("user_data", {"n": 3})
    assert len(bundle.test) == 3
    assert torch.equal(bundle.train.targets["cls"], torch.tensor([0, 1, 0]))
    assert len(build_dataset(None, {"n": 3}, factory="my_user_data:build").test) == 3


@pytest.mark.parametrize("spec", [
    "os:abort", "logging:basicConfig", "tests.datasets._tiny_factory:make", "missing.module:f", "nocolon", "a:b:c",
])
def test_a_path_that_is_not_registered_is_refused_and_nothing_is_imported(spec: str) -> None:
    import sys

    before = set(sys.modules)
    with pytest.raises(MtnasError) as err:
        build_dataset(None, {"filename": "pwned.log"}, factory=spec)
    message = str(err.value)
    assert message.startswith(f"dataset.factory: unknown dataset {spec!r}")
    assert "@mtnas.register_dataset('NAME')" in message and "--plugins MODULE" in message
    assert "'mtnas.datasets' entry point" in message and "\n" not in message
    assert set(sys.modules) == before  # nothing was imported for the name


def test_a_registered_function_that_returns_the_wrong_type_is_named() -> None:
    register_dataset("pieces")(_tiny_factory.not_a_bundle)
    with pytest.raises(MtnasError) as err:
        build_dataset("pieces", {"n": 2})
    message = str(err.value)
    assert "dataset 'pieces' returned builtins.dict" in message
    assert "must return an mtnas.data.DatasetBundle" in message


def test_registering_a_non_callable_or_a_builtin_name_is_refused() -> None:
    register_dataset("three")(_tiny_factory.NOT_CALLABLE)
    with pytest.raises(MtnasError, match="dataset 'three': registered a int, not a function"):
        build_dataset("three", {})
    with pytest.raises(MtnasError, match="'digit_gratings' is a built-in dataset"):
        register_dataset("digit_gratings")(_tiny_factory.make)
    with pytest.raises(MtnasError, match="a dataset name is letters"):
        register_dataset("pkg.mod:make")(_tiny_factory.make)


def test_two_functions_under_one_name_are_refused_the_same_one_again_is_not() -> None:
    register_dataset("twice")(_tiny_factory.make)
    register_dataset("twice")(_tiny_factory.make)  # a module imported again
    with pytest.raises(MtnasError, match="dataset 'twice' is registered twice, by "
                                         "tests.datasets._tiny_factory:make and tests.datasets._tiny_factory:not_a_bundle"):
        register_dataset("twice")(_tiny_factory.not_a_bundle)


def test_arguments_the_dataset_does_not_take_are_named() -> None:
    register_dataset("tiny")(_tiny_factory.make)
    with pytest.raises(MtnasError) as err:
        build_dataset("tiny", {"nn": 2})
    assert "got an unknown argument 'nn' (did you mean 'n'?); valid: n, seed" in str(err.value)


def test_arguments_the_dataset_needs_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_needy_data.py").write_text(
        "import mtnas\n"
        "@mtnas.register_dataset('needy')\n"
        "def make(*, root, seed=0):\n"
        "    raise AssertionError('not reached')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins(["my_needy_data"])
    with pytest.raises(MtnasError, match="needs argument\\(s\\) root"):
        build_dataset("needy", {"seed": 0})


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *points: importlib.metadata.EntryPoint) -> None:
    real = importlib.metadata.entry_points

    def entry_points(**params):
        if params.get("group") in {p.group for p in points}:
            return importlib.metadata.EntryPoints([p for p in points if p.group == params["group"]])
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_an_entry_point_is_loaded_by_name_or_by_value_only_when_named(monkeypatch: pytest.MonkeyPatch) -> None:
    point = importlib.metadata.EntryPoint("tiny_ep", "tests.datasets._tiny_factory:make", "mtnas.datasets")
    _fake_entry_points(monkeypatch, point)
    assert len(build_dataset("tiny_ep", {"n": 5}).train) == 5
    assert len(build_dataset(None, {"n": 4}, factory="tests.datasets._tiny_factory:make").train) == 4
    with pytest.raises(MtnasError, match=r"unknown dataset 'tiny_e' \(did you mean 'tiny_ep'\?\).*installed: tiny_ep"):
        build_dataset("tiny_e", {})


def test_an_entry_point_that_fails_to_load_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, importlib.metadata.EntryPoint("broken", "no_such_pkg.mod:make", "mtnas.datasets"))
    with pytest.raises(MtnasError, match=r"dataset 'broken': its entry point mtnas.datasets:broken = "
                                         r"no_such_pkg.mod:make cannot be loaded \(ModuleNotFoundError"):
        build_dataset("broken", {})


@pytest.mark.parametrize(("modules", "expected"), [
    (["no_such_plugin_module"], "cannot import plugin module 'no_such_plugin_module'"),
    (["tests.datasets._failing_plugin"], "plugin module 'tests.datasets._failing_plugin' failed while importing: "
                                         "RuntimeError: this plugin is broken"),
])
def test_a_plugin_module_that_cannot_load_is_one_line(modules: list[str], expected: str) -> None:
    with pytest.raises(MtnasError) as err:
        load_plugins(modules)
    assert expected in str(err.value) and "\n" not in str(err.value)
