"""Lazy re-exports for package ``__init__`` files (PEP 562).

A package lists which of its modules defines each public name; a name is imported the first time
it is read. So ``import mtnas`` or ``from mtnas.study import SearchRun`` loads only the modules it
needs: printing a table of trials never imports the training code (and torch).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, modules: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        modules: relative module name (``"._tree"``) -> the public names it defines.
    """
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # the next read is an ordinary attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(vars(sys.modules[package])))

    return sorted(where), __getattr__, __dir__
