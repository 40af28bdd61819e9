"""A method named on a benchmark's command line: a registered search method, optionally with its
``search.budget`` (``NAME@B``: ``budget@3`` is the budgeted search at 3 trainings)."""

from __future__ import annotations

import re

__all__ = ["method_settings", "unknown_methods"]

_SPEC = re.compile(r"[\w-]+(@\d+(\.\d+)?)?")


def method_settings(method: str) -> tuple[str, dict[str, float]]:
    """``NAME`` or ``NAME@B`` as the registered name and the search settings it overrides."""
    name, _, budget = method.partition("@")
    return name, ({"budget": float(budget)} if budget else {})


def unknown_methods(methods: list[str]) -> list[str]:
    """The entries of ``methods`` that are not ``NAME`` or ``NAME@B`` of a registered method."""
    from mtnas.search import METHODS

    return [m for m in methods if not _SPEC.fullmatch(m) or method_settings(m)[0] not in METHODS]
