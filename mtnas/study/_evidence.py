"""A study's evidence store: the units of training its searches need, kept in the study's storage.

The searches of a study's trials train units (``mtnas.search._evidence``): trees trained for some
epochs with some seed, each named by a key that digests the space, the data, mtnas's version and
the training. This store keeps them where every worker of the study looks, whatever its machine:

* a companion Optuna study ``<study>:evidence`` in the same storage (the run's SQLite file, the
  local workers' journal, or a PostgreSQL server), one trial per claim of a unit: the trial
  carries the unit's key from its creation (``system_attrs["unit"]``, written in the same storage
  operation that creates it), the claimant's host and process, and a heartbeat;
* of the RUNNING and COMPLETE trials of one key, the lowest-numbered owns it: trial numbers are
  handed out by the storage in order, so every process agrees on the owner, and a claimant that
  finds an older trial of its key fails its own and waits (no lock, nothing but the storage);
* the owner writes the result into its trial (``user_attrs["entry"]``) and completes it; weights,
  when asked for, go to the study's artifact store (the evidence study's ``weights:<key>``
  attribute names the artifact);
* an owner that dies (its process gone from this host, or no heartbeat for ``stale_after``
  seconds) has its trial failed by the next claimant, which takes the unit over.

So N workers of one study split a search's trainings, and no worker trains what another did.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from mtnas.core import MtnasError, process_gone_on
from mtnas.model import load_weights, save_weights
from mtnas.study._artifacts import ARTIFACT_ID, open_artifact_store

__all__ = ["StudyEvidence", "evidence_study_name"]

_HOLDING = (TrialState.RUNNING, TrialState.COMPLETE)


def evidence_study_name(study_name: str) -> str:
    """The companion study that holds ``study_name``'s units of evidence."""
    return f"{study_name}:evidence"


def _holder(key: str) -> dict[str, Any]:
    """The system attributes of this process's trial of unit ``key``."""
    return {"unit": key, "host": socket.gethostname(), "pid": os.getpid()}


class StudyEvidence:
    """Units of evidence in a study's storage and artifact store (see the module docstring).

    Args:
        storage: the study's Optuna storage.
        study_name: the study's name (its evidence goes to ``<study_name>:evidence``).
        artifacts: the study's artifact store URL (weights).
        stale_after: seconds without a heartbeat after which another host's claim is taken over.
    """

    beat_every = 5.0

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

    # -- reading ---------------------------------------------------------------------------------

    def _trials(self, key: str, states: tuple[TrialState, ...] = _HOLDING) -> list[optuna.trial.FrozenTrial]:
        trials = self._storage.get_all_trials(self._study_id, deepcopy=False, states=states)
        return sorted((t for t in trials if t.system_attrs.get("unit") == key), key=lambda t: t.number)

    def get(self, key: str) -> dict[str, Any] | None:
        done = self._trials(key, (TrialState.COMPLETE,))
        entry = done[0].user_attrs.get("entry") if done else None
        return entry if isinstance(entry, dict) else None

    # -- claims ----------------------------------------------------------------------------------

    def _stale(self, trial: optuna.trial.FrozenTrial) -> bool:
        attrs = trial.system_attrs
        if process_gone_on(attrs.get("host"), attrs.get("pid")):
            return True
        beat = attrs.get("beat")
        return isinstance(beat, (int, float)) and time.time() - beat > self.stale_after

    def _fail(self, trial_id: int) -> None:
        try:
            self._storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # finished by its owner or failed by another process meanwhile
            pass

    def claim(self, key: str) -> bool:
        holders = self._trials(key)
        if any(t.state == TrialState.COMPLETE for t in holders):
            return False
        live = []
        for t in holders:
            if t.state == TrialState.RUNNING and t._trial_id not in self._mine.values() and self._stale(t):
                self._fail(t._trial_id)  # its owner is gone: the unit is taken over
            else:
                live.append(t)
        if live:
            return False
        template = optuna.trial.create_trial(state=TrialState.RUNNING,
                                             system_attrs={**_holder(key), "beat": time.time()})
        trial_id = self._storage.create_new_trial(self._study_id, template_trial=template)
        owner = self._trials(key)
        if not owner or owner[0]._trial_id != trial_id:
            self._fail(trial_id)  # an older claim of another process holds the unit
            return False
        with self._lock:
            self._mine[key] = trial_id
        self._start_beating()
        return True

    def _start_beating(self) -> None:
        if self._beating is not None and self._beating.is_alive():
            return
        self._beating = threading.Thread(target=self._beat, name="mtnas-evidence-heartbeat", daemon=True)
        self._beating.start()

    def _beat(self) -> None:
        while True:
            time.sleep(self.beat_every)
            with self._lock:
                held = list(self._mine.values())
            if not held:
                return
            for trial_id in held:
                try:
                    self._storage.set_trial_system_attr(trial_id, "beat", time.time())
                except Exception:  # finished meanwhile, or the storage is briefly unreachable
                    pass

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        with self._lock:
            trial_id = self._mine.pop(key, None)
        if trial_id is None:
            raise MtnasError(f"evidence unit {key[:12]}: stored by a process that does not hold its claim")
        try:
            self._storage.set_trial_user_attr(trial_id, "entry", dict(entry))
            self._storage.set_trial_state_values(trial_id, state=TrialState.COMPLETE, values=[0.0])
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another process took the claim over (this one looked dead to it): the result is kept
            # all the same, in a trial of its own; readers take the lowest-numbered complete one.
            self._storage.create_new_trial(self._study_id, template_trial=optuna.trial.create_trial(
                state=TrialState.COMPLETE, values=[0.0], user_attrs={"entry": dict(entry)},
                system_attrs=_holder(key)))
        self.trained_here += 1

    def release(self, key: str) -> None:
        with self._lock:
            trial_id = self._mine.pop(key, None)
        if trial_id is not None:
            self._fail(trial_id)

    # -- weights ---------------------------------------------------------------------------------

    def get_weights(self, key: str, tree_key: str) -> dict[str, torch.Tensor] | None:
        artifact_id = self._storage.get_study_system_attrs(self._study_id).get(f"weights:{key}")
        if not isinstance(artifact_id, str) or not ARTIFACT_ID.fullmatch(artifact_id):
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "weights.safetensors"
            try:
                with open_artifact_store(self._artifacts).open_reader(artifact_id) as reader:
                    path.write_bytes(reader.read())
                return load_weights(path, tree_key=tree_key)
            except Exception:  # noqa: BLE001 - a missing or damaged artifact: the weights are trained again
                return None

    def put_weights(self, key: str, tree_key: str, state: Mapping[str, torch.Tensor]) -> None:
        if f"weights:{key}" in self._storage.get_study_system_attrs(self._study_id):
            return  # kept already
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{key[:16]}.safetensors"
            save_weights(path, state, tree_key=tree_key)
            artifact_id = optuna.artifacts.upload_artifact(artifact_store=open_artifact_store(self._artifacts),
                                                           file_path=str(path), study_or_trial=self._study)
        self._storage.set_study_system_attr(self._study_id, f"weights:{key}", artifact_id)
