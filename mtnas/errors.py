"""The one exception type for user errors, and the "did you mean" helper."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["MtnasError", "did_you_mean"]


class MtnasError(Exception):
    """A user error: bad input, a bad file, an unknown name.

    The CLI prints it as one line and exits with code 2; anything else is a bug (exit 1).
    """


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
