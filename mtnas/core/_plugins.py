"""A user's own components, by intent only: registered names, plugin modules and entry points.

A search space, an ``arch.json`` or a stored study names a dataset or a backbone; it never names
code to run. A name read from a file is looked up among the registered components, and nothing is
imported or called for a name that is not one. A component is registered:

- by a decorator (``@mtnas.register_dataset("name")``, ``@mtnas.register_backbone("name")``) in a
  module the user loads on purpose: ``mtnas --plugins MODULE[,MODULE...]``, the environment
  variable ``MTNAS_PLUGINS``, or an ``import`` in their own script (:func:`load_plugins`);
- or by an entry point of an installed package, in the group of its kind (``mtnas.datasets``,
  ``mtnas.backbones``): the entry point of that name is loaded the first time a file names it.

A registered function is also found by its ``"pkg.module:function"`` path (the older spelling
of a dataset factory or a backbone), and an entry point by its value.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from mtnas.core._errors import MtnasError, did_you_mean, first_few, first_line, short_repr
from mtnas.core._registry import Registry

__all__ = ["PLUGINS_ENV", "PluginRegistry", "load_plugins", "plugin_modules"]

T = TypeVar("T")
F = TypeVar("F")

#: The environment variable listing plugin modules (comma-separated) that the CLI imports at start.
PLUGINS_ENV = "MTNAS_PLUGINS"

_MODULE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_NAME = re.compile(r"[A-Za-z_][\w.-]*")


def plugin_modules(text: str | None, source: str = "--plugins") -> list[str]:
    """The module names of a comma-separated list (``--plugins`` or ``MTNAS_PLUGINS``), checked."""
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    for name in names:
        if not _MODULE.fullmatch(name):
            raise MtnasError(
                f"{source}: {short_repr(name)} is not a module name; give dotted module names separated by "
                "commas, e.g. my_plugins,my_pkg.models"
            )
    return names


def load_plugins(modules: Iterable[str], source: str = "--plugins") -> list[str]:
    """Import each module (its registrations run); the current directory is searched too, after
    the installed modules and only while these are imported (a plugin imports its own helpers at
    import time).

    Returns:
        The modules, in the order imported.

    Raises:
        MtnasError: a module that cannot be imported or fails while importing, or a registration
            that clashes with another.
    """
    names = list(modules)
    with _current_folder_searched(bool(names)):
        for name in names:
            _import_plugin(name, source)
    return names


@contextlib.contextmanager
def _current_folder_searched(wanted: bool) -> Iterator[None]:
    """The current directory on the import path, last and only while plugin modules are imported:
    a plugin module beside the user is found, but no file there shadows an installed module
    (``yaml.py``, ``torch.py``), now or later."""
    cwd = os.getcwd()
    added = wanted and cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _import_plugin(name: str, source: str) -> None:
    try:
        importlib.import_module(name)
    except MtnasError as exc:
        raise MtnasError(f"{source}: plugin module {name!r}: {exc}") from None
    except ImportError as exc:
        raise MtnasError(
            f"{source}: cannot import plugin module {name!r} ({first_line(exc)}); check the spelling and that "
            "it is installed, on PYTHONPATH or in the current directory"
        ) from None
    except Exception as exc:  # the user's module failed while importing: say where
        raise MtnasError(f"{source}: plugin module {name!r} failed while importing: "
                         f"{type(exc).__name__}: {first_line(exc)}") from None


def _spec(obj: Any) -> str | None:
    """``"pkg.module:qualname"`` of a function or class, None for other objects."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}:{qualname}" if isinstance(module, str) and isinstance(qualname, str) else None


class PluginRegistry(Generic[T]):
    """The components of one kind a user adds beside the built-ins of ``builtins``.

    Args:
        builtins: the registry of the built-in components (its ``kind`` names them in messages).
        group: the entry-point group of this kind, e.g. ``"mtnas.backbones"``.
        decorator: the public decorator, for messages, e.g. ``"mtnas.register_backbone"``.
        convert: turns what was registered (a function, an object) into the entry, on first use;
            it raises MtnasError for an object of the wrong kind.
    """

    def __init__(
        self, builtins: Registry[T], *, group: str, decorator: str, convert: Callable[[str, Any], T]
    ) -> None:
        self.builtins, self.group, self.decorator, self.convert = builtins, group, decorator, convert
        self.kind = builtins.kind
        self._raw: dict[str, Any] = {}  # name -> what was registered
        self._made: dict[str, T] = {}  # name -> its converted entry
        self._specs: dict[str, str] = {}  # "pkg.module:function" -> name

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: register a function (or object) as the component ``name``; returns it unchanged."""

        def decorate(obj: F) -> F:
            self.add(name, obj)
            return obj

        return decorate

    def add(self, name: str, obj: Any, spec: str | None = None) -> None:
        """Register ``obj`` as ``name`` (``spec``: the path it is also found by; default: its own)."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise MtnasError(f"{self.decorator}({short_repr(name)}): a {self.kind} name is letters, digits, "
                             "'_', '.' and '-', starting with a letter or '_'")
        if name in self.builtins:
            raise MtnasError(f"{self.decorator}({name!r}): {name!r} is a built-in {self.kind}; register yours "
                             "under another name")
        spec = spec or _spec(obj)
        before = self._raw.get(name)
        if before is not None and before is not obj and _spec(before) != spec:
            raise MtnasError(f"{self.decorator}({name!r}): {self.kind} {name!r} is registered twice, by "
                             f"{_spec(before) or short_repr(before)} and {spec or short_repr(obj)}; rename one")
        self._raw[name] = obj  # the same function again (a module imported twice) replaces it
        self._made.pop(name, None)
        if spec:
            self._specs[spec] = name

    def names(self) -> list[str]:
        """The user-registered names (entry points not yet loaded excluded), sorted."""
        return sorted(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self.builtins or name in self._raw or name in self._specs

    def get(self, text: str, key: str | None = None) -> T:
        """The component ``text`` names: built-in, registered (by name or path), or an entry point.

        Args:
            text: a name, or the ``"pkg.module:function"`` path of a registered function.
            key: the config key ``text`` came from (e.g. ``"dataset.factory"``), for the message.

        Raises:
            MtnasError: ``text`` names nothing registered: one line naming the key, the value, and
                how to register a component. Nothing is imported for it.
        """
        if not isinstance(text, str):
            raise MtnasError(f"{self._where(key)}expected a {self.kind} name, got {short_repr(text)}")
        if text in self.builtins:
            return self.builtins.get(text)
        name = self._specs.get(text.strip(), text)
        if name not in self._raw:
            if not self._load_entry_point(text):
                raise MtnasError(self._unknown(text, key))
            name = self._specs.get(text.strip(), text)  # the entry point's name, when text was its value
        if name not in self._made:
            self._made[name] = self.convert(name, self._raw[name])
        return self._made[name]

    # -- entry points --------------------------------------------------------------------------

    def _entry_points(self) -> list[importlib.metadata.EntryPoint]:
        try:
            return list(importlib.metadata.entry_points(group=self.group))
        except Exception:  # broken package metadata must not hide the built-ins
            return []

    def _load_entry_point(self, text: str) -> bool:
        """Load the entry point named ``text`` (or whose value is ``text``); False when none is."""
        points = self._entry_points()
        point = next((p for p in points if p.name == text), None)
        point = point or next((p for p in points if p.value.replace(" ", "") == text.strip()), None)
        if point is None:
            return False
        try:
            obj = point.load()
        except Exception as exc:  # an installed package whose module fails: say which
            raise MtnasError(f"{self.kind} {point.name!r}: its entry point {self.group}:{point.name} = "
                             f"{point.value} cannot be loaded ({type(exc).__name__}: {first_line(exc)})") from None
        if self._raw.get(point.name) is not obj:  # unless its module registered it itself
            self.add(point.name, obj, spec=point.value.replace(" ", ""))
        self._specs[point.value.replace(" ", "")] = point.name
        return True

    # -- messages ------------------------------------------------------------------------------

    @staticmethod
    def _where(key: str | None) -> str:
        return f"{key}: " if key else ""

    def _unknown(self, text: str, key: str | None) -> str:
        installed = sorted({p.name for p in self._entry_points()})
        known = [*self.builtins.names(), *self._raw, *installed]
        parts = [f"{self._where(key)}unknown {self.kind} {short_repr(text)}{did_you_mean(text, known)}",
                 f"valid: {', '.join(self.builtins.names())}"]
        if self._raw:
            parts.append(f"registered: {first_few(self.names(), 8)}")
        if installed:
            parts.append(f"installed: {first_few(installed, 8)}")
        code = " (mtnas imports no code a file names)" if ":" in text else ""
        parts.append(
            f"to use your own{code}, register it with @{self.decorator}('NAME') in a module you load with "
            f"--plugins MODULE (or {PLUGINS_ENV}=MODULE), or as a {self.group!r} entry point"
        )
        return "; ".join(parts)
