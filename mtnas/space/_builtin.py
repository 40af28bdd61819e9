"""The built-in search spaces: the YAML files of ``search_spaces/``, found by name.

Reading their names and descriptions needs only YAML, so ``mtnas spaces`` starts in a blink.
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["BUILTIN_DIR", "builtin_paths", "list_spaces"]

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


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
