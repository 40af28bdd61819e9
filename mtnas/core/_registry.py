"""A small typed registry: one per kind of component (datasets, backbones, heads, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from mtnas.core._errors import MtnasError, did_you_mean, short_repr

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; an unknown name lists the valid ones and the closest match.

    Args:
        kind: what the registry holds, used in error messages ("dataset", "backbone", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``."""

        def decorate(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorate

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable value (a list where a name belongs)
            valid = ", ".join(sorted(self._entries))
            raise MtnasError(
                f"unknown {self.kind} {short_repr(name)}{did_you_mean(name, self._entries)}; valid: {valid}"
            ) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """The registered names in the order they were registered."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # an unhashable value is no name
            return False

    def get_for_kind(self, name: str, kind: str, verb: str = "fit") -> T:
        """Entry ``name``, which must list ``kind`` among its ``kinds``; else the ones that do."""
        entry = self.get(name)
        if kind not in entry.kinds:  # type: ignore[attr-defined]
            valid = [n for n, e in sorted(self._entries.items()) if kind in e.kinds]  # type: ignore[attr-defined]
            raise MtnasError(f"{self.kind} {short_repr(name)} does not {verb} {kind} tasks; valid: {', '.join(valid)}")
        return entry
