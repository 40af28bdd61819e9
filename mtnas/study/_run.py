"""A run folder (``runs/NAME/``) and the Optuna study it holds.

Only Optuna and the standard library are imported here, so the commands that read a run
(``mtnas trials``, ``show``, ``plot``) start quickly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from mtnas.core import MtnasError
from mtnas.study._storage import open_storage
from mtnas.tree import BranchingTree

__all__ = ["INHERITED", "SearchRun", "fail_reason", "load_study", "trial_tree"]

#: A differentiable trial's inherited supernet weights, in its trial folder.
INHERITED = "inherited.safetensors"


@dataclass(frozen=True)
class SearchRun:
    """A run folder: where everything of one ``mtnas search`` lives."""

    root: Path

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.root / 'study.db').resolve()}"

    @property
    def journal_url(self) -> str:
        return f"journal:///{(self.root / 'journal.log').resolve()}"

    def artifact_store(self) -> optuna.artifacts.FileSystemArtifactStore:
        """Where trial pictures are uploaded for optuna-dashboard (``--artifact-dir runs/NAME/artifacts``)."""
        folder = self.root / "artifacts"
        folder.mkdir(parents=True, exist_ok=True)
        return optuna.artifacts.FileSystemArtifactStore(str(folder))

    def trial_dir(self, number: int) -> Path:
        return self.root / "trials" / f"{number:04d}"

    def storage(self) -> str:
        """The study's storage URL from ``run.json``; a folder that was copied or moved reads its
        own ``study.db`` or ``journal.log``, not the file at the absolute path it was made with."""
        url = str(self.info()["storage"])
        if url.startswith("sqlite:///") and (self.root / "study.db").is_file():
            return self.storage_url
        if url.startswith("journal:///") and (self.root / "journal.log").is_file():
            return self.journal_url
        return url

    def info(self) -> dict[str, Any]:
        path = self.root / "run.json"
        if not path.is_file():
            raise MtnasError(f"{self.root}: not an mtnas run folder (no run.json); start one with 'mtnas search'")
        return json.loads(path.read_text())


def load_study(run: SearchRun) -> optuna.Study:
    info = run.info()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=info["study"], storage=open_storage(run.storage()))
    except KeyError:
        raise MtnasError(f"{run.root}: the study {info['study']!r} is missing from {info['storage']}") from None


def fail_reason(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str | None:
    """Why a trial failed: its own ``fail_reason``, or the one its study recorded for it (a trial
    whose process died cannot write its own)."""
    return trial.user_attrs.get("fail_reason") or study.user_attrs.get(f"fail_reason:{trial.number}")


def trial_tree(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> BranchingTree:
    """The tree a trial evaluated, from the study alone (its ``partitions`` and the space's tasks)."""
    tasks = [t if isinstance(t, str) else t["name"] for t in (study.user_attrs.get("mtnas") or {})["space"]["tasks"]]
    return BranchingTree(tasks, trial.user_attrs["partitions"])
