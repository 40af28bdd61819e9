"""``arch.json``: a found architecture as a versioned, self-contained file.

It holds the tree, the resolved search space as plain data (enough to rebuild the model with no
run folder: ``mtnas.model.load_model``), and optionally its cost, metrics and provenance. The
record itself is pure data, so reading one needs neither the model code nor torch. Layout::

    {"format": "mtnas-architecture", "version": 1, "tasks": [...], "partitions": [...],
     "space": {...}, "cost": {...}, "metrics": {...}, "provenance": {...}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtnas.core import MtnasError, atomic_write_text, did_you_mean, load_json_text, read_text_file, short_repr
from mtnas.tree._branching import BranchingTree, InvalidTreeError

__all__ = ["ARCH_FORMAT", "ARCH_MAX_BYTES", "ARCH_VERSION", "Architecture"]

ARCH_FORMAT = "mtnas-architecture"
ARCH_VERSION = 1
#: The largest arch.json mtnas reads (one of a thousand tasks and layers is a few MiB).
ARCH_MAX_BYTES = 64 * 2**20

_KEYS = ("format", "version", "tasks", "partitions", "space", "cost", "metrics", "provenance")
_DATA_FIELDS = ("space", "cost", "metrics", "provenance")


@dataclass(frozen=True)
class Architecture:
    """A tree plus the resolved space it lives in, with optional cost, metrics and provenance.

    The four mappings are stored as plain JSON data (a deep copy made through ``json``: tuples
    become lists), so saving and loading gives back an equal record. Callers fill in provenance
    (run, trial, mtnas version).

    Args:
        tree: the branching tree.
        space: the resolved search space as plain data (``SearchSpace.to_dict()``).
        cost: e.g. ``{"params": ..., "flops": ...}``.
        metrics: e.g. ``{"val": {task: {metric: value}}, "delta_m": ...}``.
        provenance: e.g. ``{"run": ..., "trial": ..., "mtnas_version": ...}``.
    """

    tree: BranchingTree
    space: Mapping[str, Any]
    cost: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.tree, BranchingTree):
            raise TypeError(f"Architecture.tree must be a BranchingTree, got {type(self.tree).__name__}")
        for name in _DATA_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"Architecture.{name} must be a mapping, got {type(value).__name__}")
            try:
                plain = json.loads(json.dumps(value))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"Architecture.{name} is not plain JSON data: {exc}") from None
            object.__setattr__(self, name, plain)

    def to_dict(self) -> dict[str, Any]:
        """The arch.json content, keys in the documented order."""
        tree = self.tree.to_dict()
        return {
            "format": ARCH_FORMAT,
            "version": ARCH_VERSION,
            "tasks": tree["tasks"],
            "partitions": tree["partitions"],
            "space": json.loads(json.dumps(self.space)),
            "cost": json.loads(json.dumps(self.cost)),
            "metrics": json.loads(json.dumps(self.metrics)),
            "provenance": json.loads(json.dumps(self.provenance)),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "architecture") -> Architecture:
        """Check format and version, then build the record; ``source`` prefixes error messages."""
        if not isinstance(data, Mapping):
            kind = type(data).__name__
            raise MtnasError(f"{source}: not an mtnas architecture file: expected a JSON object, got {kind}")
        if "format" not in data:
            raise MtnasError(f"{source}: not an mtnas architecture file: format is missing, expected {ARCH_FORMAT!r}")
        fmt = data["format"]
        if fmt != ARCH_FORMAT:
            raise MtnasError(
                f"{source}: not an mtnas architecture file: format is {short_repr(fmt)}, expected {ARCH_FORMAT!r}"
            )
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise MtnasError(f"{source}: bad arch.json version {short_repr(version)}, expected an integer >= 1")
        if version > ARCH_VERSION:
            raise MtnasError(
                f"{source}: arch.json version {version} is newer than this mtnas understands ({ARCH_VERSION}); "
                "upgrade mtnas"
            )
        unknown = [k for k in data if k not in _KEYS]
        if unknown:
            hint = did_you_mean(unknown[0], _KEYS)
            raise MtnasError(f"{source}: unknown key {short_repr(unknown[0])}{hint}; valid keys: {', '.join(_KEYS)}")
        for key in ("tasks", "partitions", "space"):
            if key not in data:
                raise MtnasError(f"{source}: missing key {key!r}")
        for key in _DATA_FIELDS:
            if key in data and not isinstance(data[key], Mapping):
                raise MtnasError(f"{source}: {key!r} must be a JSON object, got {type(data[key]).__name__}")
        try:
            tree = BranchingTree.from_dict(data)
        except InvalidTreeError as exc:
            raise InvalidTreeError(f"{source}: {exc}") from None
        return cls(
            tree=tree,
            space=data["space"],
            cost=data.get("cost", {}),
            metrics=data.get("metrics", {}),
            provenance=data.get("provenance", {}),
        )

    def save(self, path: str | Path) -> Path:
        """Write JSON (indent 2) atomically: a crash leaves the old file or the new one, never half."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        """Read an arch.json; a missing, unreadable or invalid file is one :class:`MtnasError` line naming it
        (a directory, binary data, more than :data:`ARCH_MAX_BYTES`, JSON nested too deep included)."""
        text = read_text_file(path, "architecture file", ARCH_MAX_BYTES)
        return cls.from_dict(load_json_text(text, str(path)), source=str(path))
