"""The built-in search spaces: the YAML files of ``search_spaces/``, found by name; and the data
of a space file, read before anything heavy is imported.

``search_spaces/`` at the top of the repository is their one source. An installed package (a
wheel, ``pip install .``) carries a copy as package data, ``mtnas/space/builtin/`` (see
``setup.py``); an editable install reads the checkout's folder. Reading their names and
descriptions needs only YAML, so ``mtnas spaces`` starts in a blink, and a command handed a
broken YAML file says so before it imports torch (:func:`read_space_data`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mtnas.core import MtnasError, did_you_mean, read_yaml_file, short_repr

__all__ = ["BUILTIN_DIR", "builtin_paths", "builtin_yaml", "list_spaces", "read_space_data"]

_PACKAGED = Path(__file__).resolve().parent / "builtin"  # the wheel's copy
_CHECKOUT = Path(__file__).resolve().parents[2] / "search_spaces"  # the source, beside mtnas/ in a checkout
#: The folder the built-in spaces are read from.
BUILTIN_DIR = _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


def builtin_paths() -> dict[str, Path]:
    """Built-in space name -> its YAML file."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


def list_spaces() -> list[tuple[str, str]]:
    """(name, one-line description) of each built-in space."""
    out = []
    for name, path in builtin_paths().items():
        description = str((yaml.safe_load(path.read_text()) or {}).get("description", "")).strip()
        out.append((name, description.splitlines()[0] if description else ""))
    return out


def builtin_yaml(name: str) -> str:
    """The YAML file of the built-in space ``name``, as it ships (comments included): what a user
    of the wheel copies to write a space of their own."""
    builtins = builtin_paths()
    if name not in builtins:
        raise MtnasError(f"no built-in search space {short_repr(name)}{did_you_mean(name, builtins)}; "
                         f"built-ins: {', '.join(builtins)}")
    return builtins[name].read_text()


def read_space_data(name_or_path: str | Path) -> tuple[str, Path, Mapping[str, Any]]:
    """The YAML data of a built-in space (by name) or a space file (by path), not yet parsed.

    Returns:
        (the name to prefix errors with, the file, its top-level mapping).

    Raises:
        MtnasError: no such space or file, a file fault, malformed or hostile YAML, or a document
            that is not a mapping; one line naming the file.
    """
    builtins = builtin_paths()
    text = str(name_or_path)
    if text in builtins:
        path, source = builtins[text], text
    else:
        path = Path(text)
        if not path.exists():
            raise MtnasError(
                f"no search space {short_repr(text)}: not a built-in{did_you_mean(text, builtins)} and no such file; "
                f"built-ins: {', '.join(builtins)} (see 'mtnas spaces')"
            )
        source = path.name
    data = read_yaml_file(path)
    if not isinstance(data, Mapping):
        raise MtnasError(f"{path}: expected a YAML mapping at the top, got {type(data).__name__}")
    return source, path, data
