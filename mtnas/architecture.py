"""``arch.json``: a found architecture as a versioned, self-contained file.

It holds the tree, the resolved search space (enough to rebuild the model with no run folder),
and optionally its cost, metrics and provenance. Layout (DESIGN.md section 2)::

    {"format": "mtnas-architecture", "version": 1, "tasks": [...], "partitions": [...],
     "space": {...}, "cost": {...}, "metrics": {...}, "provenance": {...}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtnas.errors import MtnasError
from mtnas.io import atomic_write_text
from mtnas.tree import BranchingTree

__all__ = ["ARCH_FORMAT", "ARCH_VERSION", "Architecture"]

ARCH_FORMAT = "mtnas-architecture"
ARCH_VERSION = 1


@dataclass(frozen=True)
class Architecture:
    """A tree plus the resolved space it lives in, with optional cost, metrics and provenance."""

    tree: BranchingTree
    space: Mapping[str, Any]
    cost: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ARCH_FORMAT,
            "version": ARCH_VERSION,
            **self.tree.to_dict(),
            "space": dict(self.space),
            "cost": dict(self.cost),
            "metrics": dict(self.metrics),
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "architecture") -> Architecture:
        if not isinstance(data, Mapping):
            raise MtnasError(f"{source}: not an mtnas architecture file: expected a JSON object")
        fmt = data.get("format")
        if fmt != ARCH_FORMAT:
            raise MtnasError(f"{source}: not an mtnas architecture file: format is {fmt!r}, expected {ARCH_FORMAT!r}")
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise MtnasError(f"{source}: bad version {version!r}, expected an integer >= 1")
        if version > ARCH_VERSION:
            raise MtnasError(
                f"{source}: arch.json version {version} is newer than this mtnas understands ({ARCH_VERSION}); upgrade mtnas"
            )
        tree = BranchingTree.from_dict(data)
        return cls(
            tree=tree,
            space=data.get("space", {}),
            cost=data.get("cost", {}),
            metrics=data.get("metrics", {}),
            provenance=data.get("provenance", {}),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        path = Path(path)
        if not path.is_file():
            raise MtnasError(f"{path}: no such architecture file")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise MtnasError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        return cls.from_dict(data, source=str(path))

    def resolved_space(self) -> Any:
        """The ``SearchSpace`` stored in this file (resolved: it rebuilds the model alone)."""
        from mtnas.space import space_from_dict

        return space_from_dict(self.space, "arch.json space")
