"""The built-in search spaces: the YAML files of ``search_spaces/``, found by name.

``search_spaces/`` at the top of the repository is their one source. An installed package (a
wheel, ``pip install .``) carries a copy as package data, ``mtnas/space/builtin/`` (see
``setup.py``); an editable install reads the checkout's folder. Reading their names and
descriptions needs only YAML, so ``mtnas spaces`` starts in a blink.
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["BUILTIN_DIR", "builtin_paths", "list_spaces"]

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
