"""Loading a search space: a built-in name or a YAML path -> ``SearchSpace``, and its dataset.

``load_space`` parses (every key checked, errors naming the key path); ``load_resolved`` also builds
the dataset the space names and completes the space against it (``SearchSpace.resolve``).

A YAML file is read with bounded effort (``mtnas.core.load_yaml_text``): at most
``SPACE_MAX_BYTES``, nested at most ``YAML_MAX_DEPTH`` levels, at most ``YAML_MAX_NODES`` values
once its aliases are expanded, no key twice in one mapping, no YAML 1.1 base-60 numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtnas.core import (
    SPACE_MAX_BYTES,
    YAML_MAX_DEPTH,
    YAML_MAX_NODES,
    ConfigError,
    load_yaml_text,
    parse,
)
from mtnas.space._builtin import read_space_data
from mtnas.space._overrides import apply_overrides, override_note
from mtnas.space._schema import SearchSpace

if TYPE_CHECKING:
    from mtnas.data import DatasetBundle

__all__ = [
    "SPACE_MAX_BYTES",
    "YAML_MAX_DEPTH",
    "YAML_MAX_NODES",
    "build_space_dataset",
    "load_resolved",
    "load_space",
    "load_yaml_text",
    "space_from_dict",
]


def space_from_dict(data: Any, source: str = "space") -> SearchSpace:
    """Parse plain data (a YAML document) into a ``SearchSpace``; errors name the key path.

    Every section's keys, types and ranges are checked first, without the registries (so without
    torch): a typo anywhere in the file is answered in a blink; then its values are checked against
    the registries (a backbone, a head, a loss balancing).
    """
    parse(SearchSpace, data, source, registries=False)
    return parse(SearchSpace, data, source)


def load_space(name_or_path: str | Path, overrides: Sequence[str] = ()) -> SearchSpace:
    """A built-in space by name, or a YAML file by path, with ``overrides`` (``KEY.PATH=VALUE``,
    see ``mtnas.space._overrides``) set in its document before it is parsed."""
    source, path, data = read_space_data(name_or_path)
    if overrides:
        data = apply_overrides(data, overrides)
        try:
            space = space_from_dict(data, source=source)
        except ConfigError as exc:
            raise ConfigError(override_note(str(exc), overrides, source)) from None
    else:
        space = space_from_dict(data, source=source)
    return space if space.name else replace(space, name=path.stem)


def build_space_dataset(space: SearchSpace) -> DatasetBundle:
    """Build the dataset a space names; the space's seed is the default dataset seed."""
    from mtnas.data.datasets import build_dataset  # the datasets, and torch, once a space is parsed
    args = {"seed": space.seed, **space.dataset.args}
    return build_dataset(space.dataset.name, args, factory=space.dataset.factory)


def load_resolved(name_or_path: str | Path | SearchSpace) -> tuple[SearchSpace, DatasetBundle]:
    """Load a space (name, path or object), build its dataset, and resolve the space against it."""
    space = name_or_path if isinstance(name_or_path, SearchSpace) else load_space(name_or_path)
    bundle = build_space_dataset(space)
    return space.resolve(bundle), bundle
