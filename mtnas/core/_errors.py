"""The one exception type for user errors, and helpers that make their messages short and useful."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["MtnasError", "MtnasWarning", "did_you_mean", "first_few", "first_line", "one_line", "short_repr", "short_text"]


_MAX_SUGGESTED = 100


class MtnasError(Exception):
    """A user error: bad input, a bad file, an unknown name.

    The CLI prints it as one line and exits with code 2; anything else is a bug (exit 1).
    """


class MtnasWarning(UserWarning):
    """Something the user should know that does not stop the command (a cache entry not used, a
    dataset's tensor converted). The CLI prints it as one line, ``mtnas: LABEL: message``."""

    label = "warning"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    if not isinstance(word, str) or len(word) > _MAX_SUGGESTED:  # a long string resembles no name
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def first_few(items: Sequence[str], n: int = 3) -> str:
    """``"a, b, c, ... 4 more"``: the first ``n`` items, and how many were left out."""
    more = f", ... {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _ShortRepr(reprlib.Repr):
    """``reprlib`` limits (a few levels, items and characters), and no digits of huge integers."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, 48, 48, 40
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = self.maxdeque = 6

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() of a 5000-digit int is slow, and refused past 4300 digits
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()


def short_repr(value: Any, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters, in time bounded whatever the value holds.

    Error messages show user values with it: an aliased YAML value or a deep JSON document is
    read a few levels and items deep, never expanded whole.
    """
    try:
        text = _SHORT.repr(value)
    except Exception:  # a user object whose __repr__ fails
        text = f"<{type(value).__name__}>"
    return one_line(text, width)


def short_text(value: Any, width: int = 40) -> str:
    """A short printable string as it is (a task name, a key); anything else by :func:`short_repr`."""
    if isinstance(value, str) and len(value) <= width and value.isprintable():
        return value
    return short_repr(value, width)


def one_line(text: str, width: int = 500) -> str:
    """``text`` on one line (line breaks as spaces) and at most ``width`` characters."""
    flat = " ".join(str(text).splitlines())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
