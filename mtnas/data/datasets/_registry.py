"""The dataset registry and the one entry point that builds a dataset from a registered name.

Built-in datasets are in ``DATASETS``; a user's own are registered with :func:`register_dataset`
in a module they load on purpose (``mtnas --plugins MODULE``, ``MTNAS_PLUGINS``, an import), or
as a ``mtnas.datasets`` entry point. A space names one by ``dataset.name``, or by
``dataset.factory: "pkg.module:function"`` (the older spelling: the path of a registered
function). A name that is not registered is refused and nothing is imported for it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mtnas.core import MtnasError, PluginRegistry, Registry, did_you_mean, first_line, short_repr
from mtnas.data._bundle import DatasetBundle, DatasetError
from mtnas.data._checks import check_bundle

__all__ = [
    "DATASETS",
    "USER_DATASETS",
    "build_dataset",
    "check_arguments",
    "dataset_function",
    "list_datasets",
    "register_dataset",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Built-in datasets: ``make_<name>(*, seed=0, **sizes) -> DatasetBundle``, keyword-only arguments.
DATASETS: Registry[Callable[..., DatasetBundle]] = Registry("dataset")


def _dataset_function(name: str, obj: Any) -> Callable[..., DatasetBundle]:
    if not callable(obj):
        raise MtnasError(f"dataset {name!r}: registered a {type(obj).__name__}, not a function; register the function "
                         "that returns the DatasetBundle")
    return obj


#: The user's datasets (decorator, plugin modules, ``mtnas.datasets`` entry points), beside the built-ins.
USER_DATASETS: PluginRegistry[Callable[..., DatasetBundle]] = PluginRegistry(
    DATASETS, group="mtnas.datasets", decorator="mtnas.register_dataset", convert=_dataset_function
)


def register_dataset(name: str) -> Callable[[F], F]:
    """Decorator: register a function returning a ``DatasetBundle`` as dataset ``name``.

    A space then names it ``dataset: {name: NAME}`` (or by its ``"pkg.module:function"`` path as
    ``factory``). The module must be loaded on purpose: ``mtnas --plugins MODULE``,
    ``MTNAS_PLUGINS=MODULE`` or an ``import`` in your script.
    """
    return USER_DATASETS.register(name)


def list_datasets() -> list[str]:
    """Names of the built-in datasets, sorted."""
    return DATASETS.names()


def dataset_function(name: str | None, factory: str | None = None) -> Callable[..., DatasetBundle]:
    """The function of a registered dataset, by ``name`` or by the ``factory`` path of a registered one.

    Raises:
        MtnasError: both or neither given, or a name that is not registered (the message names the
            key, ``dataset.name`` or ``dataset.factory``, and how to register one).
    """
    if (name is None) == (factory is None):
        raise MtnasError(
            "a dataset needs exactly one of a name (a registered dataset) or a factory (the "
            "'pkg.module:function' of a registered one)"
        )
    if factory is not None:
        return USER_DATASETS.get(factory, "dataset.factory")
    return USER_DATASETS.get(name, "dataset.name")


def build_dataset(name: str | None, args: Mapping[str, Any], factory: str | None = None) -> DatasetBundle:
    """Build a registered dataset by ``name``, or by the ``factory`` path of a registered function.

    Args:
        name: a registered dataset (built-in, see ``list_datasets``, or a user's); None when
            ``factory`` is given.
        args: keyword arguments for the dataset function (sizes, seed, ...).
        factory: "pkg.module:function" of a registered function returning a ``DatasetBundle``.

    Raises:
        MtnasError: both or neither of ``name`` and ``factory``, a name not registered, an
            argument the dataset does not take, a bad value, a function that returns something
            other than a ``DatasetBundle``, or one whose tensors cannot be trained on
            (``mtnas.data.check_bundle``: one line naming the split, the task and what to do);
            a user's function that raises (its exception in one line, the traceback kept as the cause).
    """
    fn = dataset_function(name, factory)
    what = f"dataset factory {short_repr(factory)}" if factory is not None else f"dataset {short_repr(name)}"
    if not isinstance(args, Mapping):
        raise MtnasError(f"dataset args must be a mapping of keyword arguments, got {type(args).__name__}")
    check_arguments(fn, args, what)
    try:
        bundle = fn(**args)
    except DatasetError as exc:  # a TaskData or DatasetBundle the function could not build
        raise DatasetError(f"{what}: {exc}") from None
    except MtnasError:
        raise
    except Exception as exc:
        if factory is None and name in DATASETS:
            raise  # a built-in dataset that fails is mtnas's bug: its traceback
        # the user's own function failed: its error, in one line (--debug shows its traceback)
        where = "" if factory is not None else f" ({getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')})"
        raise DatasetError(f"{what}{where} failed in its own code: {type(exc).__name__}: {first_line(exc)}; fix the "
                           "dataset function (--debug shows its traceback)") from exc
    if not isinstance(bundle, DatasetBundle):
        raise MtnasError(
            f"{what} returned {type(bundle).__module__}.{type(bundle).__qualname__}; "
            "it must return an mtnas.data.DatasetBundle (train, val, test TaskData and the TaskInfo tuple)"
        )
    return check_bundle(bundle, what)


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
                f"{what} got an unknown argument {short_repr(key)}{did_you_mean(key, valid)}; "
                f"valid: {', '.join(valid) if valid else '(none)'}"
            )
    missing = [p.name for p in keyword if p.default is inspect.Parameter.empty and p.name not in args]
    if missing:
        raise MtnasError(f"{what} needs argument(s) {', '.join(missing)}; give them in the dataset's args")
