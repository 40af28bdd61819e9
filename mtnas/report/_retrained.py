"""The retrained trees of a run, for its report.

``mtnas retrain ARCH.json`` writes ``retrain/final.json`` beside the arch.json it was given. When
that arch.json lies in the run folder (a trial's own ``trials/NNNN/``, or an export into the run
folder such as the demo's ``export/``), the report finds the result and shows it beside the
trial it came from: the tree trained at full budget from scratch, its test delta-m against
single-task networks of the same budget, and its curves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Retrained", "find_retrained"]

#: where, under a run folder, a retrain's final.json is looked for
_PATTERNS = ("trials/*/retrain/final.json", "*/retrain/final.json", "*/*/retrain/final.json")


class Retrained(NamedTuple):
    """One finished retrain of a tree of the run."""

    folder: Path  # the retrain folder (final.json, curves.png, ...)
    trials: tuple[int, ...]  # the run's trials that evaluated this tree
    final: dict[str, Any]  # final.json

    @property
    def curves(self) -> Path | None:
        path = self.folder / "curves.png"
        return path if path.is_file() else None


def find_retrained(run_root: Path, tree_trials: dict[str, list[int]]) -> list[Retrained]:
    """The retrains under ``run_root`` of trees of the run (``tree_trials``: tree key -> its trials),
    newest first; unreadable files and trees of other runs are skipped."""
    found = []
    seen: set[Path] = set()
    for pattern in _PATTERNS:
        for path in run_root.glob(pattern):
            if path in seen:
                continue
            seen.add(path)
            try:
                final = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            if not isinstance(final, dict) or final.get("format") != "mtnas-retrain":
                continue
            trials = tree_trials.get(str(final.get("tree_key")))
            if trials:
                found.append((path.stat().st_mtime, Retrained(path.parent, tuple(trials), final)))
    return [r for _, r in sorted(found, key=lambda pair: -pair[0])]
