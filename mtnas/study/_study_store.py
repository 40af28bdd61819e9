"""A study's store: the units of training its searches need, kept in the study's storage.

The searches of a study's trials train units (``mtnas.train.Evidence``): trees trained for some
epochs with some seed, each named by a key that digests the space, the data, mtnas's version and
the training. This store keeps them where every worker of the study looks, whatever its machine:

* a companion Optuna study ``<study>:evidence`` in the same storage (the run's SQLite file, the
  local workers' journal, or a PostgreSQL server), one trial per claim of a unit: the trial
  carries the unit's key from its creation (``system_attrs["unit"]``, written in the same storage
  operation that creates it), the claimant's host, process and its start time
  (``mtnas.train.Holder``), and a heartbeat;
* of the RUNNING and COMPLETE trials of one key, the lowest-numbered owns it: trial numbers are
  handed out by the storage in order, so every process agrees on the owner, and a claimant that
  finds an older trial of its key fails its own and waits (no lock, nothing but the storage);
* the owner writes the result into its trial (``user_attrs["entry"]``, with its checksum as a
  cache file has it: ``mtnas.core.seal``) and completes it; weights, when asked for, go to the
  study's artifact store (the evidence study's ``weights:<key>`` attribute names the artifact; the
  file's metadata names the unit), and so does the rest of a unit's checkpoint, from which a later
  stop of its training resumes (``state:<key>``, ``mtnas.train.save_resume_state``);
* a claim proves it is alive or is taken over, with a line: an owner that cannot be read, that is
  gone from this host (or whose process id names another process now), or whose heartbeat is
  missing, older than ``stale_after`` seconds or in the future has its trial failed by the next
  claimant. A COMPLETE trial whose entry fails its checksum, or that its reader rejects, is
  treated as absent, with a line naming it: the unit is trained again.

All the trials of the evidence study are read in one scan, which answers the lookups of one poll
(each key once, for at most ``fresh_for`` seconds): a waiting process reads the storage once per
poll, not once per unit it waits for.

So N workers of one study split a search's trainings, and no worker trains what another did.
"""

from __future__ import annotations

import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from mtnas.core import DamagedEntryWarning, MtnasError, MtnasWarning, seal, unseal
from mtnas.model import load_weights, save_weights
from mtnas.study._artifacts import ARTIFACT_ID, open_artifact_store
from mtnas.train import Checkpoint, Holder, load_resume_state, save_resume_state

__all__ = ["StudyStore", "evidence_study_name"]

_HOLDING = (TrialState.RUNNING, TrialState.COMPLETE)
Value = TypeVar("Value")


def evidence_study_name(study_name: str) -> str:
    """The companion study that holds ``study_name``'s units of evidence."""
    return f"{study_name}:evidence"


def candidates_study_name(study_name: str) -> str:
    """The companion study that holds the candidates of ``study_name``'s budgeted searches."""
    return f"{study_name}:candidates"


def record_candidates(trial: optuna.Trial, candidates: Sequence[FrozenTrial]) -> None:
    """The candidates of ``trial``'s search (``SearchResult.candidate_trials``) as trials of the
    companion study ``NAME:candidates`` in the same storage, each tagged with the trial's number
    (user attribute ``trial``): optuna-dashboard shows each candidate's score at each rung there."""
    if not candidates:
        return
    study = optuna.create_study(storage=trial.storage, study_name=candidates_study_name(trial.study.study_name),
                                direction="maximize", load_if_exists=True)
    study.add_trials([optuna.trial.create_trial(
        state=c.state, value=c.value,  # a pruned candidate's value is its last score, as Optuna keeps it
        user_attrs={**c.user_attrs, "trial": trial.number}, intermediate_values=dict(c.intermediate_values))
        for c in candidates])


def _holder(key: str) -> dict[str, Any]:
    """The system attributes of this process's trial of unit ``key``."""
    return {"unit": key, **Holder.this_process().to_dict()}


class StudyStore:
    """Units of trained evidence in a study's storage and artifact store: an evidence store
    (``mtnas.train.EvidenceStore``; see the module docstring).

    Args:
        storage: the study's Optuna storage.
        study_name: the study's name (its evidence goes to ``<study_name>:evidence``).
        artifacts: the study's artifact store URL (weights).
        stale_after: seconds without a heartbeat after which a claim is taken over.
    """

    beat_every = 5.0
    fresh_for = 1.0

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, artifacts: str, *,
                 stale_after: float = 120.0) -> None:
        self._storage = storage
        self._study = optuna.create_study(storage=storage, study_name=evidence_study_name(study_name),
                                          load_if_exists=True)
        self._study_id = self._study._study_id
        self._artifacts = artifacts
        self.where = f"study {evidence_study_name(study_name)!r}"
        self.stale_after = stale_after
        self._mine: dict[str, int] = {}  # key -> this process's claim trial id
        self._lock = threading.Lock()
        self._beating: threading.Thread | None = None
        self.trained_here = 0  # units this process completed
        self._scan: dict[str, list[FrozenTrial]] | None = None  # key -> its RUNNING and COMPLETE trials
        self._scanned_at = 0.0
        self._served: set[str] = set()  # keys whose entry this scan gave already
        self._entries: dict[int, dict[str, Any] | None] = {}  # COMPLETE trial id -> its checked entry
        self._rejected: set[int] = set()  # COMPLETE trials whose entry a reader found unusable
        self._gave: dict[str, FrozenTrial] = {}  # key -> the trial whose entry ``get`` gave
        self._bad_weights: set[str] = set()

    # -- reading ---------------------------------------------------------------------------------

    def _trials(self, key: str, *, fresh: bool = False, serve: bool = False) -> list[FrozenTrial]:
        """The RUNNING and COMPLETE trials of ``key``, lowest number first, from one scan of the
        evidence study (read again when ``fresh``, older than ``fresh_for``, or when ``serve`` asks
        for a key the scan served already: the next poll)."""
        if (fresh or self._scan is None or time.monotonic() - self._scanned_at > self.fresh_for
                or (serve and key in self._served)):
            scan: dict[str, list[FrozenTrial]] = {}
            for t in self._storage.get_all_trials(self._study_id, deepcopy=False, states=_HOLDING):
                unit = t.system_attrs.get("unit")
                if isinstance(unit, str):
                    scan.setdefault(unit, []).append(t)
            for trials in scan.values():
                trials.sort(key=lambda t: t.number)
            self._scan, self._scanned_at, self._served = scan, time.monotonic(), set()
        if serve:
            self._served.add(key)
        return self._scan.get(key, [])

    def _entry(self, trial: FrozenTrial, key: str) -> dict[str, Any] | None:
        """A COMPLETE trial's entry when its checksum holds and no reader rejected it (a damaged
        one is named once)."""
        if trial._trial_id in self._rejected:
            return None
        if trial._trial_id not in self._entries:
            entry = None
            try:
                if "entry" not in trial.user_attrs:
                    raise ValueError("it holds no entry")
                entry = unseal(trial.user_attrs["entry"])
                if not isinstance(entry, dict):
                    raise ValueError(f"its entry is a {type(entry).__name__}, expected a mapping")
            except ValueError as exc:
                entry = None
                warnings.warn(f"{self.where} trial {trial.number}: damaged unit of trained evidence {key[:12]}, not "
                              f"used ({exc}); it is made again", DamagedEntryWarning, stacklevel=3)
            self._entries[trial._trial_id] = entry
        return self._entries[trial._trial_id]

    def _holding(self, key: str, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """The trials that hold ``key``: RUNNING ones, and COMPLETE ones with a usable entry."""
        return [t for t in trials if t.state == TrialState.RUNNING or self._entry(t, key) is not None]

    def get(self, key: str) -> dict[str, Any] | None:
        for t in self._trials(key, serve=True):
            if t.state == TrialState.COMPLETE and (entry := self._entry(t, key)) is not None:
                self._gave[key] = t
                return entry
        return None

    def reject(self, key: str, entry: Mapping[str, Any], why: str) -> None:
        trial = self._gave.pop(key, None)
        if trial is None or self._entries.get(trial._trial_id) != entry:
            return
        self._rejected.add(trial._trial_id)
        warnings.warn(f"{self.where} trial {trial.number}: damaged unit of trained evidence {key[:12]}, not used "
                      f"({why}); it is made again", DamagedEntryWarning, stacklevel=2)

    def holder(self, key: str) -> str | None:
        running = [t for t in self._trials(key) if t.state == TrialState.RUNNING]
        try:
            return str(Holder.parse(running[0].system_attrs, token=False)) if running else None
        except ValueError:
            return None

    # -- claims ----------------------------------------------------------------------------------

    def _stale(self, trial: FrozenTrial) -> str | None:
        """Why a RUNNING trial's claim is no one's; None while it proves it is alive."""
        try:
            holder = Holder.parse(trial.system_attrs, token=False)
        except ValueError as exc:
            return str(exc)
        return holder.stale(trial.system_attrs.get("beat"), self.stale_after)

    def _fail(self, trial_id: int) -> bool:
        try:
            self._storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # finished by its owner or failed by another process meanwhile
            return False
        return True

    def claim(self, key: str) -> bool:
        with self._lock:
            if key in self._mine:
                return False
        holders = self._holding(key, self._trials(key))
        if any(t.state == TrialState.COMPLETE for t in holders):
            return False
        live = False
        for t in holders:
            why = self._stale(t)
            if why is None:
                live = True
            elif self._fail(t._trial_id):  # its owner is gone: the unit is taken over
                warnings.warn(f"{self.where} trial {t.number}: a stale claim of unit {key[:12]} ({why}) is taken over",
                              MtnasWarning, stacklevel=2)
        if live:
            return False
        template = optuna.trial.create_trial(state=TrialState.RUNNING,
                                             system_attrs={**_holder(key), "beat": time.time()})
        trial_id = self._storage.create_new_trial(self._study_id, template_trial=template)
        owner = self._holding(key, self._trials(key, fresh=True))
        if not owner or owner[0]._trial_id != trial_id:
            self._fail(trial_id)  # an older claim of another process holds the unit
            return False
        with self._lock:
            self._mine[key] = trial_id
            if self._beating is None:
                self._beating = threading.Thread(target=self._beat, name="mtnas-evidence-heartbeat", daemon=True)
                self._beating.start()
        return True

    def _beat(self) -> None:
        while True:
            time.sleep(self.beat_every)
            with self._lock:
                held = list(self._mine.values())
                if not held:
                    self._beating = None
                    return
            for trial_id in held:
                try:
                    self._storage.set_trial_system_attr(trial_id, "beat", time.time())
                except Exception:  # noqa: BLE001 - finished meanwhile, or the storage is briefly unreachable
                    pass

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        with self._lock:
            trial_id = self._mine.pop(key, None)
        if trial_id is None:
            raise MtnasError(f"evidence unit {key[:12]}: stored by a process that does not hold its claim")
        sealed = seal(dict(entry))
        try:
            self._storage.set_trial_user_attr(trial_id, "entry", sealed)
            self._storage.set_trial_state_values(trial_id, state=TrialState.COMPLETE, values=[0.0])
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another process took the claim over (this one looked dead to it): the result is kept
            # all the same, in a trial of its own; readers take the lowest-numbered complete one.
            self._storage.create_new_trial(self._study_id, template_trial=optuna.trial.create_trial(
                state=TrialState.COMPLETE, values=[0.0], user_attrs={"entry": sealed},
                system_attrs=_holder(key)))
        self._scan = None  # the next look reads what this process stored
        self.trained_here += 1

    def release(self, key: str) -> None:
        with self._lock:
            trial_id = self._mine.pop(key, None)
        if trial_id is not None:
            self._fail(trial_id)
            self._scan = None

    # -- weights ---------------------------------------------------------------------------------

    def _download(self, key: str, kind: str, what: str, read: Callable[[Path], Value], then: str) -> Value | None:
        """The artifact that the evidence study's ``{kind}:{key}`` attribute names, read from a
        temporary file by ``read``; None when there is none, or (with a line: ``what`` of the unit,
        why, ``then``) when it is missing, damaged or another unit's."""
        artifact_id = self._storage.get_study_system_attrs(self._study_id).get(f"{kind}:{key}")
        if artifact_id is None:
            return None
        where = f"{self.where}: {what} of unit {key[:12]} (artifact {str(artifact_id)[:40]})"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{kind}.safetensors"
            try:
                if not isinstance(artifact_id, str) or not ARTIFACT_ID.fullmatch(artifact_id):
                    raise MtnasError("not an artifact id")
                with open_artifact_store(self._artifacts).open_reader(artifact_id) as reader:
                    path.write_bytes(reader.read())
                return read(path)
            except Exception as exc:  # noqa: BLE001 - a missing, damaged or another unit's artifact
                reason = str(exc).removeprefix(f"{path}: ") if isinstance(exc, MtnasError) else (
                    f"cannot be read: {type(exc).__name__}")
                warnings.warn(f"{where}: {reason}; {then}", DamagedEntryWarning, stacklevel=3)
                return None

    def _upload(self, key: str, kind: str, write: Callable[[Path], object]) -> None:
        """Write a file of the unit (``write``) to the artifact store, named by ``{kind}:{key}``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{key[:16]}.{kind}.safetensors"
            write(path)
            artifact_id = optuna.artifacts.upload_artifact(artifact_store=open_artifact_store(self._artifacts),
                                                           file_path=str(path), study_or_trial=self._study)
        self._storage.set_study_system_attr(self._study_id, f"{kind}:{key}", artifact_id)

    def get_weights(self, key: str, tree_key: str) -> dict[str, torch.Tensor] | None:
        weights = self._download(key, "weights", "weights", lambda path: load_weights(
            path, tree_key=tree_key, metadata={"unit": key}), "not used, they are trained again")
        if weights is None:
            self._bad_weights.add(key)
        return weights

    def put_weights(self, key: str, tree_key: str, state: Mapping[str, torch.Tensor]) -> None:
        if key not in self._bad_weights and f"weights:{key}" in self._storage.get_study_system_attrs(self._study_id):
            return  # kept already
        self._upload(key, "weights", lambda path: save_weights(path, state, tree_key=tree_key,
                                                                extra_metadata={"unit": key}))
        self._bad_weights.discard(key)

    # -- checkpoints -----------------------------------------------------------------------------

    def get_checkpoint(self, key: str, tree_key: str) -> Checkpoint | None:
        if f"state:{key}" not in self._storage.get_study_system_attrs(self._study_id):
            return None
        weights = self.get_weights(key, tree_key)
        if weights is None:
            return None
        return self._download(key, "state", "resume state", lambda path: load_resume_state(
            path, weights, tree_key=tree_key, unit=key), "not resumed from")

    def put_checkpoint(self, key: str, tree_key: str, checkpoint: Checkpoint) -> None:
        self.put_weights(key, tree_key, checkpoint.weights)
        self._upload(key, "state", lambda path: save_resume_state(path, checkpoint, tree_key=tree_key, unit=key))
