"""A method named on a benchmark's command line: a registered search method, optionally with its
``search.budget`` (``NAME@B``: ``budget@3`` is the budgeted search at 3 trainings) and its
proposers changed (``:-P`` leaves proposer P out, ``:+P`` adds it after the others:
``budget@3:-depth``, ``budget@3:+tag``)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["method_settings", "unknown_methods"]

_SPEC = re.compile(r"[\w-]+(@\d+(\.\d+)?)?(:[+-]\w+)*")


def method_settings(method: str) -> tuple[str, dict[str, Any]]:
    """``NAME[@B][:±P...]`` as the registered name and the search settings it overrides."""
    head, *changes = method.split(":")
    name, _, budget = head.partition("@")
    settings: dict[str, Any] = {"budget": float(budget)} if budget else {}
    if changes:
        from mtnas.space import SearchConfig

        proposers = list(SearchConfig().proposers)
        for change in changes:
            proposers = [p for p in proposers if p != change[1:]] + ([change[1:]] if change[0] == "+" else [])
        settings["proposers"] = tuple(proposers)
    return name, settings


def unknown_methods(methods: list[str]) -> list[str]:
    """The entries of ``methods`` that are not ``NAME[@B][:±P...]`` of a registered method and proposers."""
    from mtnas.search import METHODS, PROPOSERS

    def known(m: str) -> bool:
        if not _SPEC.fullmatch(m) or method_settings(m)[0] not in METHODS:
            return False
        return all(change[1:] in PROPOSERS for change in m.split(":")[1:])

    return [m for m in methods if not known(m)]
