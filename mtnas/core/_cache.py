"""The cache folder, and the entries in it that are checked before use.

What mtnas trains once and reuses (single-task baselines, trained trees, pairs' deltas) is kept
under :func:`cache_dir`. An entry decides what later runs report, so it is never trusted as it
lies on disk: :func:`write_checked` stores its content with the sha256 of that content's
canonical JSON, and :func:`read_checked` gives it back only when the checksum still matches and
the caller's ``parse`` accepts it (the shape, the tasks, finite numbers). A damaged or edited
entry (a truncated file, a list where a mapping belongs, an accuracy written by hand) is not
used: a :class:`DamagedEntryWarning` names the file and what is wrong, and the caller trains the
result again, which overwrites it. An entry of an older mtnas (no checksum) is made again quietly.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mtnas.core._errors import MtnasError, MtnasWarning, first_line
from mtnas.core._inputs import load_json_text, read_text_file
from mtnas.core._io import atomic_write_text

__all__ = ["CACHE_ENV", "DamagedEntryWarning", "cache_dir", "read_checked", "seal", "unseal", "write_checked"]

T = TypeVar("T")

#: The environment variable naming the cache folder.
CACHE_ENV = "MTNAS_CACHE_DIR"
#: What a checked entry says it is, beside its checksum and content.
ENTRY_FORMAT = "mtnas-cache-entry"
#: The largest entry read (a baselines file of 40 tasks is tens of KiB).
ENTRY_MAX_BYTES = 64 << 20


class DamagedEntryWarning(MtnasWarning):
    """A cache entry was damaged or edited; it is not used, and the result is made again."""


def cache_dir() -> Path:
    """``$MTNAS_CACHE_DIR`` as an absolute path, or ``~/.cache/mtnas`` when it is unset, empty or
    blank (such a value is no folder, not the current one)."""
    given = os.environ.get(CACHE_ENV, "")
    return Path(os.path.abspath(given)) if given.strip() else Path.home() / ".cache" / "mtnas"


def _canonical(content: Any) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def write_checked(path: str | Path, content: Any) -> None:
    """Write ``content`` (plain JSON data) to ``path`` atomically, with the sha256 of its canonical form."""
    atomic_write_text(path, json.dumps(seal(content)))


def seal(content: Any) -> dict[str, Any]:
    """``content`` (plain JSON data) with the sha256 of its canonical form, as :func:`write_checked`
    stores it: the same check for entries kept elsewhere than in a file (a study's attributes)."""
    return {"format": ENTRY_FORMAT, "sha256": hashlib.sha256(_canonical(content)).hexdigest(), "content": content}


def unseal(stored: Any) -> Any:
    """The content of a :func:`seal`, or a ``ValueError`` saying why it is none (no checksum: an
    older mtnas wrote it, or a hand; a checksum that does not match: edited or damaged)."""
    if not isinstance(stored, dict) or stored.get("format") != ENTRY_FORMAT or set(stored) != {
            "format", "sha256", "content"}:
        raise ValueError("it carries no checksum (not a checked entry)")
    if stored["sha256"] != hashlib.sha256(_canonical(stored["content"])).hexdigest():
        raise ValueError("its checksum does not match its content (edited or damaged)")
    return stored["content"]


def read_checked(path: str | Path, parse: Callable[[Any], T], what: str) -> T | None:
    """The entry at ``path`` as ``parse`` makes it, or None when it is not there or not usable.

    Args:
        path: the entry's file.
        parse: turns the stored content into the result, raising ``ValueError``, ``KeyError``,
            ``TypeError`` or ``MtnasError`` with the reason when the content is not what the caller
            expects (another shape, other tasks, a number that is not finite).
        what: what the entry holds, for the warning (e.g. "trained tree result").

    Returns None silently for a missing file or an entry of an older mtnas, and with a
    :class:`DamagedEntryWarning` naming the file and the fault for a damaged or edited one.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        stored = load_json_text(read_text_file(path, f"cached {what}", ENTRY_MAX_BYTES), str(path))
        if not isinstance(stored, dict) or "sha256" not in stored and "format" not in stored:
            return None  # written before entries carried a checksum: made again
        if stored.get("format") != ENTRY_FORMAT or set(stored) != {"format", "sha256", "content"}:
            raise ValueError(f"not a checked entry (keys {sorted(stored)})")
        content = stored["content"]
        if stored["sha256"] != hashlib.sha256(_canonical(content)).hexdigest():
            raise ValueError("its checksum does not match its content (edited or damaged)")
        return parse(content)
    except MtnasError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = f"{type(exc).__name__}: {first_line(exc)}" if isinstance(exc, KeyError) else first_line(exc)
    warnings.warn(f"{path}: damaged {what}, not used ({reason}); it is made again", DamagedEntryWarning, stacklevel=2)
    return None
