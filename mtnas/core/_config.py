"""Typed parsing of plain data (YAML/JSON) into frozen dataclasses.

One mechanism for every config object: the dataclass's field types say what is accepted, field
metadata states ranges (``ge``, ``gt``, ``le``, ``lt``), an optional ``_validate`` method checks
relations between fields, and an optional ``_check_registered`` method checks values against the
registries (a backbone, a head: reading one may import torch). ``parse(..., registries=False)``
leaves the last out, so a document's keys, types and relations are checked in a blink first. Errors name the key path (``backbone.layers[2].stride``), what was
expected, what arrived (a bounded repr: never the whole of a huge or aliased value), and the
closest valid key for a typo. Every float is finite and within float32's range (training computes
in float32: a learning rate of 1e39 would overflow there), and every integer fits in 64 bits.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from mtnas.core._errors import MtnasError, did_you_mean, short_repr, short_text

__all__ = ["FLOAT32_MAX", "MAX_INT", "MAX_SEED", "ConfigError", "bounded", "check_limits", "parse", "to_data"]

T = TypeVar("T")

#: The largest integer a config holds (a signed 64-bit one): sizes, seeds and counts beyond it mean nothing.
MAX_INT = 2**63 - 1
#: The largest seed (NumPy's legacy generators and most tools take 32-bit seeds).
MAX_SEED = 2**32 - 1
#: The largest finite float32: every config float becomes one (a learning rate, a loss weight).
FLOAT32_MAX = 3.4028234663852886e38


class ConfigError(MtnasError):
    """A config value or key is wrong; the message starts with its key path."""


def bounded(default: Any = dataclasses.MISSING, **limits: float) -> Any:
    """A dataclass field with range limits, e.g. ``epochs: int = bounded(10, ge=1)``."""
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=limits)
    return dataclasses.field(default=default, metadata=limits)


def parse(cls: type[T], data: Any, path: str = "", *, registries: bool = True) -> T:
    """Build the frozen dataclass ``cls`` from plain ``data``, validating as it goes (against the
    registries too, unless ``registries`` is False)."""
    return _parse_value(cls, data, path or cls.__name__, registries)


def to_data(obj: Any) -> Any:
    """The plain-data (JSON-ready) form of a config dataclass; inverse of :func:`parse`."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_data(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [to_data(v) for v in obj]
    return obj


def _describe(value: Any) -> str:
    return short_repr(value)


def _key(path: str, key: Any) -> str:
    """``path.key``, with a long or odd key shown by its bounded repr."""
    return f"{path}.{short_text(key)}"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list"
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return "a mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _parse_value(tp: Any, value: Any, path: str, registries: bool = True) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _parse_union(tp, value, path, registries)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = did_you_mean(value, [str(c) for c in choices]) if isinstance(value, str) else ""
            raise ConfigError(f"{path}: expected one of {list(choices)}, got {_describe(value)}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, path, registries)
    if origin is tuple:
        return _parse_tuple(tp, value, path, registries)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        key_tp, val_tp = typing.get_args(tp) or (str, Any)
        return {
            _parse_value(key_tp, k, _key(path, k), registries): _parse_value(val_tp, v, _key(path, k), registries)
            for k, v in value.items()
        }
    return _parse_scalar(tp, value, path)


def _parse_scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:
                raise ConfigError(f"{path}: expected an integer of at most {MAX_INT} in size, got {_describe(value)}")
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # float(10**400)
                number = math.inf
            if not math.isfinite(number):
                raise ConfigError(f"{path}: expected a finite number, got {_describe(value)}")
            if abs(number) > FLOAT32_MAX:
                raise ConfigError(f"{path}: {_describe(value)} is beyond float32's range (at most {FLOAT32_MAX:.4g} "
                                  "in size), in which training computes; give a smaller number")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is type(None):
        if value is None:
            return None
    else:  # pragma: no cover - a config class used a type this parser does not know
        raise TypeError(f"{path}: unsupported config type {tp!r}")
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")


def _parse_union(tp: Any, value: Any, path: str, registries: bool) -> Any:
    options = typing.get_args(tp)
    errors = []
    # Try simple types first so that 3 parses as int before tuple[int, ...] complains.
    for option in sorted(options, key=lambda o: typing.get_origin(o) is not None):
        try:
            return _parse_value(option, value, path, registries)
        except ConfigError as exc:
            errors.append(exc)
    # A value of the right shape but a bad content deserves that option's specific message (a
    # list of the option's length before a list of another length).
    ranked = sorted(zip(sorted(options, key=lambda o: typing.get_origin(o) is not None), errors),
                    key=lambda pair: not _same_length(pair[0], value))
    for option, exc in ranked:
        shaped = (typing.get_origin(option) is tuple and isinstance(value, list)) or (
            dataclasses.is_dataclass(option) and isinstance(value, Mapping)
        )
        if shaped:
            raise exc
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")


def _same_length(tp: Any, value: Any) -> bool:
    """Whether ``value`` is a list as long as the fixed-length tuple type ``tp`` (any length for ``tuple[X, ...]``)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is not tuple or not isinstance(value, (list, tuple)):
        return False
    return (len(args) == 2 and args[1] is Ellipsis) or len(args) == len(value)


def _parse_tuple(tp: Any, value: Any, path: str, registries: bool) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_parse_value(args[0], v, f"{path}[{i}]", registries) for i, v in enumerate(value))
    if len(args) != len(value):
        raise ConfigError(f"{path}: expected a list of {len(args)} items, got {len(value)}")
    return tuple(_parse_value(a, v, f"{path}[{i}]", registries) for i, (a, v) in enumerate(zip(args, value)))


def check_limits(value: Any, limits: Mapping[str, float], path: str) -> None:
    """Raise ConfigError unless ``value`` (a number, or each number of a tuple) meets ``limits``
    (``ge``, ``gt``, ``le``, ``lt``, as in :func:`bounded`); other limit names are ignored."""
    checks = {
        "ge": (lambda v, b: v >= b, ">="),
        "gt": (lambda v, b: v > b, ">"),
        "le": (lambda v, b: v <= b, "<="),
        "lt": (lambda v, b: v < b, "<"),
    }
    items = value if isinstance(value, tuple) else (value,)
    for name, bound in limits.items():
        if name not in checks:
            continue
        ok, sign = checks[name]
        for item in items:
            if isinstance(item, (int, float)) and not ok(item, bound):
                raise ConfigError(f"{path}: must be {sign} {bound}, got {_describe(item)}")


def _parse_dataclass(cls: Any, value: Any, path: str, registries: bool) -> Any:
    if isinstance(value, cls):
        return value
    shorthand = getattr(cls, "_shorthand", None)
    if shorthand is not None and isinstance(value, str):
        value = {shorthand: value}  # e.g. a task given by its name alone
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    renamed = getattr(cls, "_renamed", {})  # an old key -> the key that now sets what it set
    for key in value:
        if key in renamed and key not in fields:
            raise ConfigError(f"{path}: key {key!r} is now {renamed[key]!r} (it sets the same); "
                              f"rename it to {path}.{renamed[key]}")
        if key not in fields:
            raise ConfigError(
                f"{path}: unknown key {_describe(key)}{did_you_mean(key, fields)}; valid keys: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}"
        if name in value:
            parsed = _parse_value(hints[name], value[name], sub, registries)
            check_limits(parsed, f.metadata, sub)
            kwargs[name] = parsed
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: missing required key {name!r}")
    obj = cls(**kwargs)
    for check in ("_validate", "_check_registered") if registries else ("_validate",):
        validate = getattr(obj, check, None)
        if validate is not None:
            try:
                validate()
            except ConfigError as exc:
                raise ConfigError(f"{path}.{exc}") from None
    return obj
