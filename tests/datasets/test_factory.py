"""Loading a user's dataset factory: the good path and each way the string or function can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtnas.core import MtnasError
from mtnas.data import DatasetBundle
from mtnas.data.datasets import build_dataset, load_factory


def test_factory_in_a_package_is_called_with_the_args() -> None:
    bundle = build_dataset(None, {"n": 6, "seed": 1}, factory="tests.datasets._tiny_factory:make")
    assert isinstance(bundle, DatasetBundle)
    assert len(bundle.train) == 6
    assert [t.name for t in bundle.tasks] == ["cls", "reg"]


def test_factory_in_a_module_on_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_user_data.py").write_text(
        "from tests.datasets._tiny_factory import make as _make\n"
        "def build(*, n, scale=1.0):\n"
        "    bundle = _make(n=n)\n"
        "    return bundle\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    bundle = build_dataset(None, {"n": 3}, factory="my_user_data:build")
    assert len(bundle.test) == 3
    assert torch.equal(bundle.train.targets["cls"], torch.tensor([0, 1, 0]))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nocolon", "'nocolon': expected 'package.module:function'"),
        ("pkg.mod:", "expected 'package.module:function'"),
        ("a:b:c", "expected 'package.module:function'"),
        ("missing.module:f", "cannot import module 'missing.module' (No module named 'missing')"),
        ("os:nonexistent", "'os' has no attribute 'nonexistent'"),
        ("os:getcwdd", "'os' has no attribute 'getcwdd' (did you mean 'getcwd'?)"),
        ("os.path:join.nothing", "'os.path.join' has no attribute 'nothing'"),
        (
            "tests.datasets._tiny_factory:NOT_CALLABLE",
            "'tests.datasets._tiny_factory.NOT_CALLABLE' is not callable (type int)",
        ),
    ],
)
def test_a_factory_that_cannot_be_loaded_says_why(spec: str, expected: str) -> None:
    with pytest.raises(MtnasError) as err:
        build_dataset(None, {}, factory=spec)
    assert expected in str(err.value)
    assert f"dataset factory {spec!r}" in str(err.value)


def test_a_factory_returning_the_wrong_type_is_named() -> None:
    with pytest.raises(MtnasError) as err:
        build_dataset(None, {"n": 2}, factory="tests.datasets._tiny_factory:not_a_bundle")
    message = str(err.value)
    assert "dataset factory 'tests.datasets._tiny_factory:not_a_bundle' returned builtins.dict" in message
    assert "must return an mtnas.data.DatasetBundle" in message


def test_a_factory_wrong_type_from_a_tmp_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_bad_data.py").write_text("def make(seed=0):\n    return [1, 2, 3]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MtnasError, match=r"'my_bad_data:make' returned builtins\.list"):
        build_dataset(None, {"seed": 0}, factory="my_bad_data:make")


def test_arguments_the_factory_does_not_take_are_named() -> None:
    with pytest.raises(MtnasError) as err:
        build_dataset(None, {"nn": 2}, factory="tests.datasets._tiny_factory:make")
    assert "got an unknown argument 'nn' (did you mean 'n'?); valid: n, seed" in str(err.value)


def test_arguments_the_factory_needs_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_needy_data.py").write_text("def make(*, root, seed=0):\n    raise AssertionError('not reached')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MtnasError, match="needs argument\\(s\\) root"):
        build_dataset(None, {"seed": 0}, factory="my_needy_data:make")


def test_load_factory_returns_the_function() -> None:
    from tests.datasets._tiny_factory import make

    assert load_factory(" tests.datasets._tiny_factory:make ") is make
