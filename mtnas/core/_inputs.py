"""Reading the files a user hands mtnas (a search space, an arch.json) with bounded effort.

Every fault is one :class:`MtnasError` line naming the file: missing, a directory, not a regular
file, unreadable, too large, binary, not UTF-8, not valid JSON, nested too deep, or an integer
with too many digits. Nothing a file holds can make reading it hang or crash.
"""

from __future__ import annotations

import itertools
import json
import re
import stat
from pathlib import Path
from typing import Any

from mtnas.core._errors import MtnasError, first_line

__all__ = ["MAX_JSON_DEPTH", "MAX_JSON_INT_DIGITS", "load_json_text", "read_text_file"]

#: Nesting an mtnas JSON file never needs (an arch.json is about 8 levels deep).
MAX_JSON_DEPTH = 64
#: Digits of the longest integer in an mtnas JSON file (FLOPs, seeds: 20 at most).
MAX_JSON_INT_DIGITS = 40

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def read_text_file(path: str | Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of ``path``, a ``what`` (e.g. "architecture file") of at most ``max_bytes``.

    Raises:
        MtnasError: one line naming the file and the fault.
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
        raise MtnasError(f"{path}: not a regular file (a device, pipe or socket), expected a {what}")
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
    """``json.loads(text)``, refusing nesting deeper than :data:`MAX_JSON_DEPTH` and integers
    longer than :data:`MAX_JSON_INT_DIGITS` digits; ``source`` prefixes error messages."""
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise MtnasError(f"{source}: JSON nested {depth} levels deep, more than the {MAX_JSON_DEPTH} an mtnas file "
                         "may use; it is not an mtnas file")
    try:
        return json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise MtnasError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except _LongInteger as exc:
        raise MtnasError(f"{source}: a JSON integer of {exc} digits, more than the {MAX_JSON_INT_DIGITS} an mtnas "
                         "file holds") from None
    except (ValueError, RecursionError) as exc:
        raise MtnasError(f"{source}: not valid JSON ({first_line(exc)})") from None


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
