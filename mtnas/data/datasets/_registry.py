"""The dataset registry and the one entry point that builds a dataset from a name or a factory."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from mtnas.core import MtnasError, Registry, did_you_mean, load_factory
from mtnas.data._bundle import DatasetBundle

__all__ = ["DATASETS", "build_dataset", "check_arguments", "list_datasets"]

#: Built-in datasets: ``make_<name>(*, seed=0, **sizes) -> DatasetBundle``, keyword-only arguments.
DATASETS: Registry[Callable[..., DatasetBundle]] = Registry("dataset")


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return DATASETS.names()


def build_dataset(name: str | None, args: Mapping[str, Any], factory: str | None = None) -> DatasetBundle:
    """Build a registered dataset by ``name``, or call a user's ``factory`` ("pkg.module:function").

    Args:
        name: a registered dataset (see ``list_datasets``); None when ``factory`` is given.
        args: keyword arguments for the dataset function (sizes, seed, ...).
        factory: "pkg.module:function" returning a ``DatasetBundle``; None for a built-in.

    Raises:
        MtnasError: both or neither of ``name`` and ``factory``, an unknown name, an argument the
            dataset does not take, a bad value, or a factory that cannot be loaded or returns
            something other than a ``DatasetBundle``.
    """
    if (name is None) == (factory is None):
        raise MtnasError(
            "a dataset needs exactly one of a name (a built-in dataset) or a factory ('pkg.module:function')"
        )
    if not isinstance(args, Mapping):
        raise MtnasError(f"dataset args must be a mapping of keyword arguments, got {type(args).__name__}")
    if factory is not None:
        fn = load_factory(factory)
        what = f"dataset factory {factory!r}"
    else:
        fn = DATASETS.get(name)
        what = f"dataset {name!r}"
    check_arguments(fn, args, what)
    bundle = fn(**args)
    if not isinstance(bundle, DatasetBundle):
        raise MtnasError(
            f"{what} returned {type(bundle).__module__}.{type(bundle).__qualname__}; "
            "it must return an mtnas.data.DatasetBundle (train, val, test TaskData and the TaskInfo tuple)"
        )
    return bundle


def check_arguments(fn: Callable[..., Any], args: Mapping[str, Any], what: str) -> None:
    """Raise MtnasError if ``fn`` cannot take ``args`` as keywords: an unknown or a missing argument."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): let the call decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    keyword = [p for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    valid = [p.name for p in keyword]
    for key in args:
        if key not in valid:
            raise MtnasError(
                f"{what} got an unknown argument {key!r}{did_you_mean(key, valid)}; "
                f"valid: {', '.join(valid) if valid else '(none)'}"
            )
    missing = [p.name for p in keyword if p.default is inspect.Parameter.empty and p.name not in args]
    if missing:
        raise MtnasError(f"{what} needs argument(s) {', '.join(missing)}; give them in the dataset's args")
