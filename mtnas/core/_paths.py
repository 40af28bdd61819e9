"""Names that stay names, and paths built from stored strings that stay inside their folder.

A file or a stored study may hold any string where a name belongs (a task, a study, an artifact
id). Such a string becomes a module key, a file name or a path segment only once it is checked:

- :func:`check_name` refuses what cannot be a task name (a dot is a module path to torch, a
  slash a folder, a lone surrogate kills font rendering);
- :func:`inside` joins path segments onto a folder, resolves the result and refuses it unless it
  is still inside that folder, before anything is created there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mtnas.core._errors import MtnasError, short_repr

__all__ = ["FOLDER_NAME", "NAME", "check_name", "inside", "is_folder_name", "is_name"]

#: A name: 1-100 word characters (letters, digits, ``_``) or ``-``, starting with a word character.
NAME = re.compile(r"[^\W][\w-]{0,99}")
#: A plain folder name (a run's, a study's): 1-100 ASCII letters, digits, ``.``, ``_`` or ``-``,
#: starting with a letter or digit and not ending in ``.``: never ``..``, never a path.
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def is_folder_name(text: object) -> bool:
    """Whether ``text`` is a :data:`FOLDER_NAME`."""
    return isinstance(text, str) and bool(FOLDER_NAME.fullmatch(text)) and not text.endswith(".")


def is_name(text: object) -> bool:
    """Whether ``text`` is a :data:`NAME` (and encodable: no lone surrogates)."""
    if not isinstance(text, str) or not NAME.fullmatch(text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_name(text: object, what: str) -> str:
    """``text`` if it is a :data:`NAME`; else one line naming ``what`` (e.g. "tasks[2]") and the rule."""
    if not is_name(text):
        raise MtnasError(f"{what}: {short_repr(text, 40)} cannot be a name: use 1-100 letters, digits, '_' or '-' "
                         "(no '.', '/', spaces or control characters), starting with a letter, digit or '_'")
    return text  # type: ignore[return-value]


def inside(base: str | Path, *parts: str) -> Path:
    """``base / parts...`` resolved, refused unless it lies inside ``base`` (symbolic links followed).

    Raises:
        MtnasError: a part is absolute, holds ``..`` that leaves ``base``, a NUL byte, or a link
            that points elsewhere.
    """
    root = Path(os.path.realpath(base))
    try:
        target = Path(os.path.realpath(root.joinpath(*parts)))
    except (ValueError, OSError) as exc:  # a NUL byte, a path too long
        raise MtnasError(f"{short_repr('/'.join(parts))}: not a usable path inside {root} ({exc})") from None
    if target != root and root not in target.parents:
        raise MtnasError(f"{short_repr('/'.join(parts), 80)}: leads outside {root} (to {short_repr(str(target), 80)}); "
                         "a stored name may not be a path")
    return target
