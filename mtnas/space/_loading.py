"""Loading a search space: a built-in name or a YAML path -> ``SearchSpace``, and its dataset.

``load_space`` parses (every key checked, errors naming the key path); ``load_resolved`` also builds
the dataset the space names and completes the space against it (``SearchSpace.resolve``).

A YAML file is read with bounded effort (:func:`load_yaml_text`): at most ``SPACE_MAX_BYTES``,
nested at most ``YAML_MAX_DEPTH`` levels, and at most ``YAML_MAX_NODES`` values once its aliases
are expanded, so a "billion laughs" document is refused before anything walks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from mtnas.core import ConfigError, MtnasError, did_you_mean, first_line, parse, read_text_file, short_repr
from mtnas.data import DatasetBundle
from mtnas.data.datasets import build_dataset
from mtnas.space._builtin import builtin_paths
from mtnas.space._overrides import apply_overrides, override_note
from mtnas.space._schema import SearchSpace

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

#: The largest search-space file mtnas reads (a space is a few KiB).
SPACE_MAX_BYTES = 2**20
#: The deepest nesting of lists and mappings in a space file.
YAML_MAX_DEPTH = 32
#: The most values (scalars, lists, mappings) a document may hold once its aliases are expanded.
YAML_MAX_NODES = 100_000
#: The most characters of scalars a document may hold once its aliases are expanded.
YAML_MAX_CHARS = 8 * 2**20
#: The most digits of an integer in a space (seeds and sizes have at most 20).
YAML_MAX_INT_DIGITS = 40


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing integers too long to mean anything (int() of them is slow)."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > YAML_MAX_INT_DIGITS:
            raise MtnasError(f"line {node.start_mark.line + 1}: an integer of {digits} digits, more than the "
                             f"{YAML_MAX_INT_DIGITS} a search space holds")
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def space_from_dict(data: Any, source: str = "space") -> SearchSpace:
    """Parse plain data (a YAML document) into a ``SearchSpace``; errors name the key path."""
    return parse(SearchSpace, data, source)


def load_space(name_or_path: str | Path, overrides: Sequence[str] = ()) -> SearchSpace:
    """A built-in space by name, or a YAML file by path, with ``overrides`` (``KEY.PATH=VALUE``,
    see ``mtnas.space._overrides``) set in its document before it is parsed."""
    builtins = builtin_paths()
    text = str(name_or_path)
    if text in builtins:
        path = builtins[text]
    else:
        path = Path(text)
        if not path.exists():
            raise MtnasError(
                f"no search space {short_repr(text)}: not a built-in{did_you_mean(text, builtins)} and no such file; "
                f"built-ins: {', '.join(builtins)} (see 'mtnas spaces')"
            )
    data = load_yaml_text(read_text_file(path, "search-space YAML file", SPACE_MAX_BYTES), str(path))
    if not isinstance(data, Mapping):
        raise MtnasError(f"{path}: expected a YAML mapping at the top, got {type(data).__name__}")
    source = path.name if text not in builtins else text
    if overrides:
        data = apply_overrides(data, overrides)
        try:
            space = space_from_dict(data, source=source)
        except ConfigError as exc:
            raise ConfigError(override_note(str(exc), overrides, source)) from None
    else:
        space = space_from_dict(data, source=source)
    return space if space.name else replace(space, name=path.stem)


def load_yaml_text(text: str, source: str) -> Any:
    """The data of one YAML document (safe tags only), read with bounded effort.

    Raises:
        MtnasError: malformed YAML, nesting deeper than :data:`YAML_MAX_DEPTH`, more than
            :data:`YAML_MAX_NODES` values or :data:`YAML_MAX_CHARS` characters once aliases are
            expanded, a recursive alias, or a value YAML cannot build (a 5000-digit integer).
    """
    try:
        _check_nesting(text, source)  # before composing: the composer recurses once per level
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node)
            return loader.construct_document(node)
        except MtnasError as exc:
            raise MtnasError(f"{source}: {exc}") from None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise MtnasError(f"{source}:{where} malformed YAML: {problem}") from None
    except (ValueError, OverflowError, TypeError, RecursionError) as exc:  # e.g. int() of 5000 digits, a bad date
        raise MtnasError(f"{source}: a YAML value that cannot be read ({type(exc).__name__}: {first_line(exc)})") from None


def _check_nesting(text: str, source: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > YAML_MAX_DEPTH:
                mark = event.start_mark
                raise MtnasError(f"{source}: line {mark.line + 1}: nested deeper than {YAML_MAX_DEPTH} levels; a "
                                 "search space is a few levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose aliases expand to too many values or characters (or to itself).

    Each distinct node is visited once (depth first, an explicit stack), its expanded size the
    sum of its children's: linear in the file, whatever the aliases multiply it to.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, characters) once expanded
    open_: set[int] = set()  # the nodes on the current path
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            kids = [sizes[id(k)] for k in _children(node)]
            chars = len(node.value) if isinstance(node, yaml.ScalarNode) else 0
            nodes, chars = 1 + sum(n for n, _ in kids), chars + sum(c for _, c in kids)
            if nodes > YAML_MAX_NODES or chars > YAML_MAX_CHARS:
                raise MtnasError(
                    f"line {node.start_mark.line + 1}: its aliases expand to more than {YAML_MAX_NODES:,} "
                    f"values or {YAML_MAX_CHARS // 2**20} MiB of text; a search space is far smaller"
                )
            sizes[key] = (nodes, chars)
        elif key not in sizes:
            if key in open_:
                raise MtnasError(f"line {node.start_mark.line + 1}: an alias refers to a value that "
                                 "contains it (a recursive alias)")
            open_.add(key)
            stack.append((node, True))
            stack.extend((k, False) for k in _children(node) if id(k) not in sizes)


def build_space_dataset(space: SearchSpace) -> DatasetBundle:
    """Build the dataset a space names; the space's seed is the default dataset seed."""
    args = {"seed": space.seed, **space.dataset.args}
    return build_dataset(space.dataset.name, args, factory=space.dataset.factory)


def load_resolved(name_or_path: str | Path | SearchSpace) -> tuple[SearchSpace, DatasetBundle]:
    """Load a space (name, path or object), build its dataset, and resolve the space against it."""
    space = name_or_path if isinstance(name_or_path, SearchSpace) else load_space(name_or_path)
    bundle = build_space_dataset(space)
    return space.resolve(bundle), bundle
