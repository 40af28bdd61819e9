"""Where trained evidence lives, and who trains what: an evidence store.

A unit of evidence (a tree trained for some epochs with some seed, ``mtnas.search._evidence``) is
named by a key that digests everything its result depends on. A store keeps each unit's result
(a JSON entry) and, when asked, its weights, and hands each missing unit to exactly one trainer:
``claim(key)`` is True for the process that is to train it and False while another live process
holds it. A process that needs units therefore claims what it can, trains that, and waits for the
rest (``mtnas.search._evidence.Evidence.obtain``); two processes that need the same units split
them, and neither trains what the other did.

Two stores:

* :class:`LocalStore` (the default): this machine's cache folder
  (``$MTNAS_CACHE_DIR/evidence/``), claims as lock files that name their process; a lock whose
  process is gone is taken over.
* a study's store (``mtnas.study.StudyEvidence``): the study's own storage and artifact store, so
  workers on any machine that reaches the study share one search's trainings.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from mtnas.core import MtnasError, process_gone_on, read_checked, write_checked
from mtnas.model import load_weights, save_weights

__all__ = ["EvidenceStore", "LocalStore"]


class EvidenceStore(Protocol):
    """Trained units by key; see the module docstring."""

    where: str  # what the store is, for messages

    def get(self, key: str) -> dict[str, Any] | None:
        """The unit's entry when it is trained, else None."""

    def claim(self, key: str) -> bool:
        """True when this process is to train the unit (no entry, no live claim of another)."""

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Store a trained unit's entry and end this process's claim."""

    def release(self, key: str) -> None:
        """End this process's claim without an entry (its training failed)."""

    def get_weights(self, key: str, tree_key: str) -> dict[str, torch.Tensor] | None:
        """The unit's trained weights when stored (None: not stored or damaged)."""

    def put_weights(self, key: str, tree_key: str, state: Mapping[str, torch.Tensor]) -> None:
        """Keep a unit's trained weights."""


class LocalStore:
    """Evidence in a folder of this machine (``$MTNAS_CACHE_DIR/evidence`` by default).

    ``<key>.json`` holds an entry, ``<key>.safetensors`` the weights, ``<key>.lock`` a claim: the
    claiming process's host and pid, created exclusively. A lock whose process is gone, or older
    than ``stale_after`` seconds, is broken by the next claimant.
    """

    stale_after = 6 * 3600.0

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.where = str(self.root)

    def _path(self, key: str, suffix: str) -> Path:
        return self.root / key[:2] / f"{key}{suffix}"

    def get(self, key: str) -> dict[str, Any] | None:
        def parse(content: Any) -> dict[str, Any]:
            if not isinstance(content, dict) or content.get("key") != key:
                raise ValueError(f"not the entry of unit {key[:12]}")
            return content

        # missing: None; damaged or edited (its checksum): None with a warning naming the file
        return read_checked(self._path(key, ".json"), parse, "unit of trained evidence")

    def claim(self, key: str) -> bool:
        if self.get(key) is not None:
            return False
        lock = self._path(key, ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(lock):
                    return False
                lock.unlink(missing_ok=True)  # its process is gone: taken over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
            if self.get(key) is None:
                return True
            self.release(key)  # trained by another process between the two looks
            return False
        return False

    def _stale(self, lock: Path) -> bool:
        try:
            holder = json.loads(lock.read_text() or "{}")
            age = time.time() - lock.stat().st_mtime
        except (OSError, ValueError):
            return True
        if not isinstance(holder, dict):
            return True
        return process_gone_on(holder.get("host"), holder.get("pid")) or age > self.stale_after

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        path = self._path(key, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_checked(path, {**entry, "key": key})
        self.release(key)

    def release(self, key: str) -> None:
        self._path(key, ".lock").unlink(missing_ok=True)

    def get_weights(self, key: str, tree_key: str) -> dict[str, torch.Tensor] | None:
        path = self._path(key, ".safetensors")
        if not path.is_file():
            return None
        try:
            return load_weights(path, tree_key=tree_key)
        except MtnasError:
            return None  # damaged: trained again, and written anew

    def put_weights(self, key: str, tree_key: str, state: Mapping[str, torch.Tensor]) -> None:
        path = self._path(key, ".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(path, state, tree_key=tree_key)
