"""A run: its folder (``runs/NAME/``) and the Optuna study it holds, or a study named by its
storage URL alone (``postgresql://user@host/db#NAME``) for reading a run from another machine.

A run folder is read as data that may be damaged, edited or copied: ``run.json`` is read with
bounded effort and every entry checked for its type; the study it names is looked up by the
name ``run.json`` records (a copied or renamed folder keeps its study); a file storage
(``study.db``, ``journal.log``) is the folder's own, never a path elsewhere that ``run.json``
points to, and a read never creates a database; the study's records are checked before use
(``mtnas.study._records``).

Only Optuna and the standard library are imported here, so the commands that read a run
(``mtnas trials``, ``show``, ``plot``) start quickly.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from mtnas.core import (
    FOLDER_NAME,
    MAX_SEED,
    MtnasError,
    MtnasWarning,
    is_folder_name,
    load_json_text,
    one_line,
    read_text_file,
    short_repr,
    short_text,
)
from mtnas.study._artifacts import fetch_trial_file, store_folder
from mtnas.study._records import check_settings, check_study
from mtnas.study._storage import file_path, mask_url, open_storage
from mtnas.tree import BranchingTree

__all__ = ["INHERITED", "RUN_NAME", "SearchRun", "check_run_name", "fail_reason", "load_study", "trial_file",
           "trial_label", "trial_tree"]

#: A differentiable trial's inherited supernet weights, in its trial folder.
INHERITED = "inherited.safetensors"
#: A run name: one path segment of letters, digits, ``.``, ``_`` and ``-`` (it names the folder
#: under ``--runs-dir`` and the study).
RUN_NAME = FOLDER_NAME
#: The largest run.json mtnas reads (one is a few hundred bytes).
RUN_FILE_MAX_BYTES = 2**20


def check_run_name(name: str, what: str = "--name") -> str:
    """``name`` if it is a run name (see ``RUN_NAME``); else a one-line error saying what is allowed."""
    if not is_folder_name(name):
        shown = short_text(name, 40)
        raise MtnasError(f"{what} {shown!r}: a run name is one folder name of 1-100 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit (no '/', no '..')")
    return name


def _whole(low: int, high: int = 2**63 - 1) -> tuple[Any, str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
            f"a whole number in {low}..{high}" if high < 2**63 - 1 else f"a whole number >= {low}")


_TEXT = (lambda v: isinstance(v, str), "a text")
#: What each entry of run.json must be when present (``storage`` and ``study`` always are).
RUN_FILE_ENTRIES: dict[str, tuple[Any, str]] = {
    "storage": _TEXT,
    "study": (is_folder_name, "a run name (letters, digits, '.', '_', '-')"),
    "mtnas_version": _TEXT,
    "space": _TEXT,
    "seed": _whole(0, MAX_SEED),
    "strategy": _TEXT,
    "objectives": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(o, str) for o in v),
                   "a list of objective names"),
    "sampler": _TEXT,
    "trials": _whole(1),
    "artifacts": _TEXT,
    "command": (lambda v: isinstance(v, list), "a list"),
    "started": _TEXT,
}
#: What ``--resume`` reads from run.json besides the storage and the study.
RESUME_ENTRIES = ("strategy", "seed", "objectives", "trials")


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
                raise MtnasError(f"{mask_url(text)!r}: name the study after the storage URL, e.g. {mask_url(url)}#dg1")
            check_run_name(study, "the study")
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

    @property
    def study_name(self) -> str:
        """The study's name in its storage: the one ``run.json`` records (a copied or renamed folder
        keeps it), or the one after ``#``."""
        return str(self.info()["study"])

    def trial_dir(self, number: int) -> Path:
        return self.root / "trials" / f"{number:04d}"

    def storage(self) -> str:
        """The study's storage URL.

        A database server's URL is used as ``run.json`` records it. A file storage is the folder's
        own ``study.db`` or ``journal.log`` (a folder that was copied or moved reads its own file),
        or the file the run was created with (``--storage sqlite:///shared.db``, recorded absolute)
        when it exists and is no other run folder's own. Anything else is refused: a copy made
        without its database would silently read the original's study, and a read never creates a
        database (a hand-edited run.json could make one anywhere).
        """
        url = str(self.info()["storage"])
        if self.remote is not None:
            return url
        path = file_path(url)
        if path is None:
            return url
        own = self.root / ("journal.log" if url.startswith("journal") else "study.db")
        recorded = Path(path)
        if own.is_file() or _same_file(recorded, own):
            return self.storage_url if own.name == "study.db" else self.journal_url
        if recorded.is_absolute() and recorded.is_file() and not _run_folder_file(recorded):
            return url  # the storage the run was created with, where it is
        shown = one_line(repr(mask_url(url)), 400)
        missing = "" if recorded.is_absolute() and recorded.exists() else f", and {path!r} does not exist"
        raise MtnasError(
            f"{self.root / 'run.json'}: the study's storage {shown} is not this folder's {own.name}"
            f"{' (it is missing: was the folder copied without it?)' if not own.exists() else ''}{missing}; a run "
            f"folder reads its own file, or the storage it was created with; to use that storage, repeat it: "
            f"mtnas trials '{mask_url(url)}#{self.study_name}', or mtnas search --resume --name {self.root.name} "
            f"--storage '{mask_url(url)}'"
        )

    def info(self) -> dict[str, Any]:
        """``run.json``, its entries checked (for a remote run: its storage URL and study name)."""
        if self.remote is not None:
            url, _, study = self.remote.partition("#")
            return {"storage": url, "study": study}
        path = self.root / "run.json"
        if self.root.exists() and not self.root.is_dir():
            raise MtnasError(f"{self.root}: is a file, not a run folder")
        if not path.exists():
            raise MtnasError(f"{self.root}: not an mtnas run folder (no run.json); start one with 'mtnas search'")
        try:
            info = load_json_text(read_text_file(path, "run file", RUN_FILE_MAX_BYTES), str(path))
        except MtnasError as exc:
            raise MtnasError(f"unreadable run file: {exc}; restore it or start a new run") from None
        if not isinstance(info, dict):
            raise MtnasError(f"{path}: damaged run file: a JSON {type(info).__name__}, expected an object; restore it "
                             "or start a new run")
        missing = [k for k in ("storage", "study") if k not in info]
        if missing:
            raise MtnasError(f"{path}: damaged run file: no {', '.join(missing)}; restore it or start a new run")
        for key, (ok, expected) in RUN_FILE_ENTRIES.items():
            if key in info and not ok(info[key]):
                raise MtnasError(f"{path}: damaged run file: {key} is {short_repr(info[key], 40)}, expected {expected}; "
                                 "restore it or start a new run")
        return info

    def artifact_store(self, in_study: str | None) -> str:
        """The artifact store a resumed search of this folder uploads its trials' files to.

        A folder store is this folder's own ``artifacts/`` when ``run.json`` names it, or names
        the ``artifacts/`` beside the study file of the folder this one was copied from; another
        folder, or a bucket, only when it is the store the study itself records (``in_study``;
        None: the study is not created yet, which a bucket may be used for). An edited
        ``run.json`` never sends a trial's files anywhere else.
        """
        info, own = self.info(), str((self.root / "artifacts").resolve())
        recorded = str(info.get("artifacts", own))
        folder = store_folder(recorded)
        origin = file_path(str(info["storage"]))  # the study file of the folder run.json was written in
        if folder and os.path.isabs(folder) and (
                _same_file(Path(folder), Path(own)) or (origin and Path(folder) == Path(origin).parent / "artifacts")):
            return own  # its own, or the default one of the folder it was copied from
        studied = store_folder(in_study) if in_study is not None else None
        if folder is None:  # a bucket
            agrees = in_study in (None, recorded)
        else:
            agrees = studied is not None and _same_file(Path(folder), Path(studied))
        if agrees:
            return recorded
        raise MtnasError(
            f"{self.root / 'run.json'}: artifacts {short_repr(recorded, 80)} is neither this folder's artifacts/ nor "
            f"the store the study records ({short_repr(in_study, 80)}); a resumed run writes its trial files only "
            "there: restore run.json's artifacts"
        )

    def resume_info(self) -> dict[str, Any]:
        """``run.json`` with everything ``--resume`` needs (strategy, seed, objectives, trials)."""
        info = self.info()
        missing = [k for k in RESUME_ENTRIES if k not in info]
        if missing:
            raise MtnasError(f"{self.root / 'run.json'}: damaged run file: no {', '.join(missing)}, which --resume "
                             "needs; restore it or start a new run")
        return info


def _run_folder_file(path: Path) -> bool:
    """Whether ``path`` is a run folder's own storage (its ``study.db`` or ``journal.log``, beside a
    ``run.json``): another run's, read by a copy of it only by naming it."""
    return path.name in ("study.db", "journal.log") and (path.parent / "run.json").is_file()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, ValueError, RuntimeError):
        return False


def load_study(run: SearchRun) -> optuna.Study:
    """The run's study, read (never created) from its storage, its records checked
    (``mtnas.study._records``): one error line for a damaged or edited one."""
    info, url = run.info(), run.storage()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    shown = mask_url(url)
    if url.startswith("journal:///"):
        _check_journal_end(file_path(url) or "")
    try:
        study = optuna.load_study(study_name=info["study"], storage=open_storage(url, create=False))
        check_study(study)
        return study
    except KeyError:
        raise MtnasError(f"{run.root}: the study {info['study']!r} is missing from {shown}") from None
    except MtnasError:
        raise
    except Exception as exc:  # a damaged database file, a stored value that is not JSON, a schema from another Optuna
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise MtnasError(f"{run.root}: cannot read the study from {shown}: {type(exc).__name__}: {first}") from None


def _check_journal_end(path: str) -> None:
    """Warn when a journal file ends in an incomplete record: Optuna reads up to its last complete
    one and says nothing, so a truncated journal would show a study that lost its trials."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            complete = f.read(1) == b"\n"
    except OSError:
        return  # opening the storage says what is wrong with the file
    if not complete:
        warnings.warn(f"{path}: the journal ends in an incomplete record (truncated, or being written right now): "
                      "what follows its last complete record is not read; restore it from a copy if it was cut",
                      MtnasWarning, stacklevel=3)


def fail_reason(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str | None:
    """Why a trial failed: its own ``fail_reason``, or the one its study recorded for it (a trial
    whose process died cannot write its own)."""
    return trial.user_attrs.get("fail_reason") or study.user_attrs.get(f"fail_reason:{trial.number}")


def trial_tree(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> BranchingTree:
    """The tree a trial evaluated, from the study alone (its ``partitions`` and the space's tasks)."""
    space = check_settings(study).get("space") or {}
    tasks = [t if isinstance(t, str) else t.get("name") if isinstance(t, dict) else t for t in space.get("tasks", [])]
    if "partitions" not in trial.user_attrs:
        raise MtnasError(f"trial {trial.number} has no tree (it did not complete); see 'mtnas trials'")
    try:
        return BranchingTree(tasks, trial.user_attrs["partitions"])
    except MtnasError as exc:
        raise MtnasError(f"study {short_text(study.study_name)!r} trial {trial.number}: its stored tree: {exc}") from None


def trial_label(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str | None:
    """The readable label of a trial's tree (``BranchingTree.describe``), made from its stored
    tree (never its stored ``tree`` text, which an edit could make say anything); None when the
    trial has no tree."""
    return trial_tree(study, trial).describe() if "partitions" in trial.user_attrs else None


def trial_file(run: SearchRun, study: optuna.Study, trial: optuna.trial.FrozenTrial, name: str) -> Path | None:
    """A file of ``trial`` (``arch.json``, ``routing.npz``, ...): from the run folder when it is on
    this machine, else from the study's artifact store; None when the trial has no such file."""
    local = run.trial_dir(trial.number) / name
    if run.remote is None and local.is_file():
        return local
    store = check_settings(study).get("artifacts")
    return fetch_trial_file(study, trial, name, store) if store else None
