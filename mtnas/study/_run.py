"""A run: its folder (``runs/NAME/``) and the Optuna study it holds, or a study named by its
storage URL alone (``postgresql://user@host/db#NAME``) for reading a run from another machine.

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
from mtnas.study._artifacts import fetch_trial_file
from mtnas.study._storage import open_storage
from mtnas.tree import BranchingTree

__all__ = ["INHERITED", "SearchRun", "fail_reason", "load_study", "trial_file", "trial_tree"]

#: A differentiable trial's inherited supernet weights, in its trial folder.
INHERITED = "inherited.safetensors"


@dataclass(frozen=True)
class SearchRun:
    """A run folder, or (``remote``) a study read from its storage with no folder on this machine.

    Attributes:
        root: the run folder; for a remote run, a folder named after the study where the commands
            that write (``report``, ``plot``) put their files by default.
        remote: ``URL#STUDY`` when the run was named by its storage.
    """

    root: Path
    remote: str | None = None

    @classmethod
    def open(cls, ref: str | Path) -> SearchRun:
        """A run folder path, or ``URL#STUDY`` (e.g. ``postgresql://user@host/db#dg1``)."""
        text = str(ref)
        if "://" in text and not Path(text).exists():
            url, _, study = text.partition("#")
            if not study:
                raise MtnasError(f"{text!r}: name the study after the storage URL, e.g. {url}#dg1")
            return cls(Path(study), remote=text)
        return cls(Path(text))

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.root / 'study.db').resolve()}"

    @property
    def journal_url(self) -> str:
        return f"journal:///{(self.root / 'journal.log').resolve()}"

    @property
    def name(self) -> str:
        """What the run is called: its folder's name (a copied folder keeps its new name), or the study's."""
        return self.root.name if self.remote is None else self.remote.partition("#")[2]

    def trial_dir(self, number: int) -> Path:
        return self.root / "trials" / f"{number:04d}"

    def storage(self) -> str:
        """The study's storage URL; a folder that was copied or moved reads its own ``study.db`` or
        ``journal.log``, not the file at the absolute path it was made with."""
        url = str(self.info()["storage"])
        if self.remote is None and url.startswith("sqlite:///") and (self.root / "study.db").is_file():
            return self.storage_url
        if self.remote is None and url.startswith("journal:///") and (self.root / "journal.log").is_file():
            return self.journal_url
        return url

    def info(self) -> dict[str, Any]:
        """``run.json`` (for a remote run: its storage URL and study name)."""
        if self.remote is not None:
            url, _, study = self.remote.partition("#")
            return {"storage": url, "study": study}
        path = self.root / "run.json"
        if self.root.exists() and not self.root.is_dir():
            raise MtnasError(f"{self.root}: is a file, not a run folder")
        if not path.is_file():
            raise MtnasError(f"{self.root}: not an mtnas run folder (no run.json); start one with 'mtnas search'")
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise MtnasError(f"{path}: unreadable run file ({type(exc).__name__}: {str(exc)[:80]}); "
                             "restore it or start a new run") from None
        missing = [k for k in ("storage", "study") if not isinstance(info, dict) or not isinstance(info.get(k), str)]
        if missing:
            raise MtnasError(f"{path}: damaged run file: no {', '.join(missing)}; restore it or start a new run")
        return info


def load_study(run: SearchRun) -> optuna.Study:
    info = run.info()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return optuna.load_study(study_name=info["study"], storage=open_storage(run.storage()))
    except KeyError:
        raise MtnasError(f"{run.root}: the study {info['study']!r} is missing from {info['storage']}") from None
    except MtnasError:
        raise
    except Exception as exc:  # a damaged database file, a schema from another Optuna
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise MtnasError(f"{run.root}: cannot read the study from {info['storage']}: {first}") from None


def fail_reason(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str | None:
    """Why a trial failed: its own ``fail_reason``, or the one its study recorded for it (a trial
    whose process died cannot write its own)."""
    return trial.user_attrs.get("fail_reason") or study.user_attrs.get(f"fail_reason:{trial.number}")


def trial_tree(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> BranchingTree:
    """The tree a trial evaluated, from the study alone (its ``partitions`` and the space's tasks)."""
    tasks = [t if isinstance(t, str) else t["name"] for t in (study.user_attrs.get("mtnas") or {})["space"]["tasks"]]
    return BranchingTree(tasks, trial.user_attrs["partitions"])


def trial_file(run: SearchRun, study: optuna.Study, trial: optuna.trial.FrozenTrial, name: str) -> Path | None:
    """A file of ``trial`` (``arch.json``, ``routing.npz``, ...): from the run folder when it is on
    this machine, else from the study's artifact store; None when the trial has no such file."""
    local = run.trial_dir(trial.number) / name
    if run.remote is None and local.is_file():
        return local
    store = (study.user_attrs.get("mtnas") or {}).get("artifacts")
    return fetch_trial_file(study, trial, name, store) if store else None
