"""Reading a YAML document a user hands mtnas, with bounded effort and no surprises.

Bounded: nested at most :data:`YAML_MAX_DEPTH` levels, at most :data:`YAML_MAX_NODES` values and
:data:`YAML_MAX_CHARS` characters once its aliases are expanded (a "billion laughs" document is
refused before anything walks it), and integers of at most :data:`YAML_MAX_INT_DIGITS` digits.

No surprises: a key written twice in one mapping is an error (PyYAML keeps the last silently),
and YAML 1.1's base-60 numbers are not numbers: ``epochs: 1:30`` is the text ``"1:30"`` (as in
YAML 1.2), so the schema says "expected int" instead of reading 90.

Only PyYAML and the standard library are imported: a command can report a bad file before it
imports torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mtnas.core._errors import MtnasError, first_line, short_text
from mtnas.core._inputs import read_text_file

__all__ = [
    "SPACE_MAX_BYTES",
    "YAML_MAX_CHARS",
    "YAML_MAX_DEPTH",
    "YAML_MAX_INT_DIGITS",
    "YAML_MAX_NODES",
    "load_yaml_text",
    "read_yaml_file",
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

_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
# PyYAML's YAML 1.1 int and float patterns without their base-60 forms (``1:30``, ``1:30.5``).
_INT_RE = re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""", re.X)
_FLOAT_RE = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without base-60 numbers, refusing integers too long to mean anything."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > YAML_MAX_INT_DIGITS:
            raise MtnasError(f"line {node.start_mark.line + 1}: an integer of {digits} digits, more than the "
                             f"{YAML_MAX_INT_DIGITS} a search space holds")
        return super().construct_yaml_int(node)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, _INT_RE if tag == _INT else _FLOAT_RE if tag == _FLOAT else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor(_INT, _Loader.construct_yaml_int)


def read_yaml_file(path: str | Path, what: str = "search-space YAML file", max_bytes: int = SPACE_MAX_BYTES) -> Any:
    """The data of the YAML file ``path`` (a ``what``), read with :func:`read_text_file` and
    :func:`load_yaml_text`: every fault is one MtnasError line naming the file."""
    return load_yaml_text(read_text_file(path, what, max_bytes), str(path))


def load_yaml_text(text: str, source: str) -> Any:
    """The data of one YAML document (safe tags only), read with bounded effort.

    Raises:
        MtnasError: malformed YAML, nesting deeper than :data:`YAML_MAX_DEPTH`, more than
            :data:`YAML_MAX_NODES` values or :data:`YAML_MAX_CHARS` characters once aliases are
            expanded, a recursive alias, a key repeated in one mapping, or a value YAML cannot
            build (a 5000-digit integer).
    """
    try:
        _check_nesting(text, source)  # before composing: the composer recurses once per level
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_nodes(node)
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


def _check_keys(node: yaml.MappingNode) -> None:
    """Refuse a key written twice in one mapping (keys a ``<<`` merge brings in may be overridden)."""
    seen: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:
            continue
        ident, line = (key.tag, key.value), key.start_mark.line + 1
        if ident in seen:
            raise MtnasError(f"line {line}: key {short_text(key.value)!r} appears twice in one mapping (first on "
                             f"line {seen[ident]}); keep one")
        seen[ident] = line


def _check_nodes(root: yaml.Node) -> None:
    """Refuse a node graph whose aliases expand to too many values or characters (or to itself),
    and a mapping that repeats a key.

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
            if isinstance(node, yaml.MappingNode):
                _check_keys(node)
            open_.add(key)
            stack.append((node, True))
            stack.extend((k, False) for k in _children(node) if id(k) not in sizes)
