"""Reading the files a user hands mtnas (a search space, an arch.json, weights) with bounded effort.

Every fault is one :class:`MtnasError` line naming the file: missing, a directory, not a regular
file (a FIFO or a device, which would block or never end), unreadable, too large, binary, not
UTF-8, not valid JSON, nested too deep, a key written twice, or an integer with too many digits.
Nothing a file holds can make reading it hang or crash.
"""

from __future__ import annotations

import itertools
import json
import re
import stat
from pathlib import Path
from typing import Any

from mtnas.core._errors import MtnasError, first_line, short_text

__all__ = ["MAX_JSON_DEPTH", "MAX_JSON_INT_DIGITS", "load_json_text", "read_text_file", "regular_file"]

#: Nesting an mtnas JSON file never needs (an arch.json is about 8 levels deep).
MAX_JSON_DEPTH = 64
#: Digits of the longest integer in an mtnas JSON file (FLOPs, seeds: 20 at most).
MAX_JSON_INT_DIGITS = 40

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def regular_file(path: str | Path, what: str) -> Path:
    """``path`` when it is a regular file; else one line saying what it is instead.

    Called before a file is opened: opening a FIFO blocks until someone writes to it, and reading
    ``/dev/zero`` never ends, so neither is ever opened as a ``what`` (e.g. "weights file").
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise MtnasError(f"{path}: no such {what}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise MtnasError(f"{path}: cannot read the {what} ({_os_problem(exc)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise MtnasError(f"{path}: is a directory, expected a file ({what})")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "a device" if
                stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a socket or other special file")
        raise MtnasError(f"{path}: {kind}, not a regular file; expected a {what}")
    return path


def read_text_file(path: str | Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of ``path``, a ``what`` (e.g. "architecture file") of at most ``max_bytes``.

    Raises:
        MtnasError: one line naming the file and the fault.
    """
    path = regular_file(path, what)
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise MtnasError(f"{path}: cannot read the {what} ({_os_problem(exc)})") from None
    if len(data) > max_bytes:
        raise MtnasError(f"{path}: larger than {_size(max_bytes)}, too large for a {what}")
    if b"\0" in data:
        raise MtnasError(f"{path}: binary data, not text; expected a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MtnasError(f"{path}: not UTF-8 text (a bad byte at offset {exc.start}); expected a {what}") from None


def load_json_text(text: str, source: str) -> Any:
    """``json.loads(text)``, refusing nesting deeper than :data:`MAX_JSON_DEPTH`, integers longer
    than :data:`MAX_JSON_INT_DIGITS` digits and a key written twice in one object (JSON readers
    disagree on which copy counts); ``source`` prefixes error messages."""
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise MtnasError(f"{source}: JSON nested {depth} levels deep, more than the {MAX_JSON_DEPTH} an mtnas file "
                         "may use; it is not an mtnas file")
    try:
        return json.loads(text, parse_int=_parse_int, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise MtnasError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except _LongInteger as exc:
        raise MtnasError(f"{source}: a JSON integer of {exc} digits, more than the {MAX_JSON_INT_DIGITS} an mtnas "
                         "file holds") from None
    except _RepeatedKey as exc:
        raise MtnasError(f"{source}: the key {exc} appears twice in one JSON object; keep one") from None
    except (ValueError, RecursionError) as exc:
        raise MtnasError(f"{source}: not valid JSON ({first_line(exc)})") from None


class _RepeatedKey(Exception):
    """A key written twice in one JSON object (its repr is the message)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(repr(short_text(key)))
        out[key] = value
    return out


class _LongInteger(Exception):
    """An integer literal with too many digits (its digit count is the message)."""


def _parse_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_JSON_INT_DIGITS:
        raise _LongInteger(str(digits))
    return int(literal)


def _json_depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text (brackets inside strings do not count), linear time."""
    steps = (1 if b in "[{" else -1 for b in _BRACKETS.findall(_STRING.sub('""', text)))
    return max(itertools.accumulate(steps, initial=0))


def _os_problem(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or first_line(exc)


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"
