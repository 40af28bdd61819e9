"""Loading a search space: a built-in name or a YAML path -> ``SearchSpace``, and its dataset.

``load_space`` parses (every key checked, errors naming the key path); ``load_resolved`` also builds
the dataset the space names and completes the space against it (``SearchSpace.resolve``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from mtnas.core import MtnasError, did_you_mean, parse
from mtnas.data import DatasetBundle
from mtnas.data.datasets import build_dataset
from mtnas.space._builtin import builtin_paths
from mtnas.space._schema import SearchSpace

__all__ = ["build_space_dataset", "load_resolved", "load_space", "space_from_dict"]


def space_from_dict(data: Any, source: str = "space") -> SearchSpace:
    """Parse plain data (a YAML document) into a ``SearchSpace``; errors name the key path."""
    return parse(SearchSpace, data, source)


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name, or a YAML file by path."""
    builtins = builtin_paths()
    text = str(name_or_path)
    if text in builtins:
        path = builtins[text]
    else:
        path = Path(text)
        if not path.is_file():
            raise MtnasError(
                f"no search space {text!r}: not a built-in{did_you_mean(text, builtins)} and no such file; "
                f"built-ins: {', '.join(builtins)} (see 'mtnas spaces')"
            )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MtnasError(f"{path}:{where}: malformed YAML: {problem}") from None
    if not isinstance(data, Mapping):
        raise MtnasError(f"{path}: expected a YAML mapping at the top, got {type(data).__name__}")
    space = space_from_dict(data, source=path.name if text not in builtins else text)
    return space if space.name else replace(space, name=path.stem)


def build_space_dataset(space: SearchSpace) -> DatasetBundle:
    """Build the dataset a space names; the space's seed is the default dataset seed."""
    args = {"seed": space.seed, **space.dataset.args}
    return build_dataset(space.dataset.name, args, factory=space.dataset.factory)


def load_resolved(name_or_path: str | Path | SearchSpace) -> tuple[SearchSpace, DatasetBundle]:
    """Load a space (name, path or object), build its dataset, and resolve the space against it."""
    space = name_or_path if isinstance(name_or_path, SearchSpace) else load_space(name_or_path)
    bundle = build_space_dataset(space)
    return space.resolve(bundle), bundle
