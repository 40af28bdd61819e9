"""``--set KEY.PATH=VALUE``: change any key of a search space from the command line.

The convention of OmegaConf's and Hydra's dotlists: ``training.lr=0.01``,
``dataset.args.root=/data/nyuv2``, ``backbone.layers[2].channels=32`` (or ``layers.2``). The value
is read as YAML (``0.01`` and ``1e-3`` numbers, ``null``, ``[1, 2]`` a list, ``{n_train: 100}`` a
mapping, anything else a string; quote a number to make it a string: ``'007'``). Overrides are applied to the YAML document before it is parsed, so a wrong key or
value is refused with the same key-path error as in the file; an error on a key that an override
wrote also names the override.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mtnas.core import MtnasError, load_yaml_text, short_repr  # the bounded YAML reader of space files

__all__ = ["Override", "apply_overrides", "override_note", "parse_override"]

_EXPONENT = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")
_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\.(\d+)")
Override = tuple[tuple[str | int, ...], Any, str]  # (key path, value, the text as given)


def parse_override(text: str) -> Override:
    """``KEY.PATH=VALUE`` -> (path steps, value, text); a malformed one is a one-line error."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise MtnasError(f"--set {short_repr(text)}: expected KEY.PATH=VALUE, e.g. --set training.lr=0.01")
    key = key.strip()
    steps: list[str | int] = []
    pos = 0
    while pos < len(key):
        match = _STEP.match(key, pos)
        if match is None or (pos == 0 and key.startswith(".")):
            raise MtnasError(f"--set {short_repr(text)}: {short_repr(key)} is not a key path; write keys joined by "
                             "dots and list positions as [N], e.g. backbone.layers[2].channels")
        name, index, dotted = match.groups()
        steps.append(name if name is not None else int(index if index is not None else dotted))
        pos = match.end()
    if isinstance(steps[0], int):
        raise MtnasError(f"--set {short_repr(text)}: a key path starts with a key of the space, e.g. training.epochs")
    value = load_yaml_text(raw, f"--set {key}") if raw.strip() else ""
    if isinstance(value, str) and _EXPONENT.fullmatch(raw.strip()):
        value = float(value)  # 1e-3: YAML 1.1 reads a float without a dot as a string; a command line means a number
    return tuple(steps), value, text


def _shown(steps: Sequence[str | int]) -> str:
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the space document ``data`` with each ``KEY.PATH=VALUE`` of ``overrides`` set, in order.

    Missing mappings along a path are created (the parser then says whether their keys exist);
    a list position must exist.
    """
    out = copy.deepcopy(dict(data))
    for text in overrides:
        steps, value, _ = parse_override(text)
        node: Any = out
        for depth, step in enumerate(steps[:-1]):
            here = _shown(steps[: depth + 1])
            nxt = steps[depth + 1]
            if isinstance(step, int):
                node = _item(node, step, _shown(steps[:depth]), text)
            else:
                if not isinstance(node, dict):
                    raise MtnasError(f"--set {text}: {_shown(steps[:depth])} is {short_repr(node)}, not a mapping")
                if node.get(step) is None:
                    if isinstance(nxt, int):
                        raise MtnasError(f"--set {text}: {here} is not a list in this space")
                    node[step] = {}
                node = node[step]
        last = steps[-1]
        where = _shown(steps[:-1])
        if isinstance(last, int):
            _item(node, last, where, text)
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise MtnasError(f"--set {text}: {where} is {short_repr(node)}, not a mapping")
    return out


def _item(node: Any, index: int, where: str, text: str) -> Any:
    if not isinstance(node, list):
        raise MtnasError(f"--set {text}: {where} is {short_repr(node)}, not a list")
    if index >= len(node):
        raise MtnasError(f"--set {text}: {where} has {len(node)} entries (positions 0-{len(node) - 1})")
    return node[index]


def override_note(message: str, overrides: Sequence[str], source: str) -> str:
    """``message`` (a config error that starts with a key path) with the override behind that key, if any."""
    path = message.split(":", 1)[0]
    rel = "" if path == source else path[len(source) + 1:] if path.startswith(source + ".") else path
    for text in overrides:
        steps, _, _ = parse_override(text)
        written = _shown(steps)
        below_it = rel == written or rel.startswith((written + ".", written + "["))  # inside what it set
        above_it = not rel or written.startswith((rel + ".", rel + "["))  # e.g. an unknown key it added
        if below_it or (above_it and any(repr(s) in message for s in steps if isinstance(s, str))):
            return f"{message} (from --set {text})"
    return message
