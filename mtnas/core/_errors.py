"""The one exception type for user errors, and helpers that make their messages short and useful."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = ["MtnasError", "did_you_mean", "first_few", "first_line"]


class MtnasError(Exception):
    """A user error: bad input, a bad file, an unknown name.

    The CLI prints it as one line and exits with code 2; anything else is a bug (exit 1).
    """


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def first_few(items: Sequence[str], n: int = 3) -> str:
    """``"a, b, c, ... 4 more"``: the first ``n`` items, and how many were left out."""
    more = f", ... {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
