"""Loading a user's dataset factory from a "pkg.module:function" string."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from mtnas.core._errors import MtnasError, did_you_mean

__all__ = ["load_factory"]

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_SPEC = re.compile(rf"(?P<module>{_DOTTED}):(?P<attr>{_DOTTED})")


def load_factory(spec: str, what: str = "dataset factory", returns: str = "a DatasetBundle") -> Callable[..., Any]:
    """Import ``spec`` ("pkg.module:function", the function may be a dotted attribute path).

    ``what`` names the factory in error messages and ``returns`` what the function must return.

    The current directory is searched too, so a module beside the user's search space imports.

    Raises:
        MtnasError: a malformed string, a module that cannot be imported, a missing attribute, or
            an attribute that is not callable.
    """
    match = _SPEC.fullmatch(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        raise MtnasError(
            f"{what} {spec!r}: expected 'package.module:function' "
            "(a module path, a colon, then the function's name), e.g. 'my_pkg.data:make'"
        )
    module_name, attr_path = match["module"], match["attr"]
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: modules beside the user resolve
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise MtnasError(
            f"{what} {spec!r}: cannot import module {module_name!r} ({exc}); "
            "check the spelling and that it is installed or on PYTHONPATH"
        ) from None
    owner = module_name
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise MtnasError(
                f"{what} {spec!r}: {owner!r} has no attribute {part!r}{did_you_mean(part, public)}"
            )
        obj, owner = getattr(obj, part), f"{owner}.{part}"
    if not callable(obj):
        raise MtnasError(
            f"{what} {spec!r}: {owner!r} is not callable (type {type(obj).__name__}); "
            f"name a function that returns {returns}"
        )
    return obj
