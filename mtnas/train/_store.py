"""Where trained evidence lives, and who trains what: an evidence store.

A unit of evidence (a tree trained for some epochs with some seed, ``mtnas.train._evidence``) is
named by a key that digests everything its result depends on. A store keeps each unit's result
(a JSON entry with its checksum) and, when asked, its weights (bound to the unit: its key in the
file's metadata, beside the tensors' checksum) and the rest of its training's state at its stop
(``mtnas.train.Checkpoint``: optimizer, schedule, RNG states, ...; bound and checksummed the same
way), from which a later stop of the same training resumes, and hands each missing unit to exactly one
trainer: ``claim(key)`` is True for the process that is to train it and False while another live
process holds it. A process that needs units therefore claims what it can, trains that, and waits
for the rest (``mtnas.train.Evidence.obtain``); two processes that need the same units
split them, and neither trains what the other did.

A claim proves it is alive, or it is taken over (with a line naming it): it names its owner
(:class:`Holder`: host, process id, the time that process started), and the owner beats (a
heartbeat every ``beat_every`` seconds while it trains). A claim whose owner cannot be read (an
empty file, a process id that is no process's, no host), whose process on this host is gone or
is another process under the same id, or whose heartbeat is older than ``stale_after`` seconds or
lies in the future, is no one's. An entry that the reader finds unusable although its checksum
holds (``reject``) is treated as absent: the unit is claimed and trained again.

Two stores:

* :class:`LocalStore` (the default): this machine's cache folder (``$MTNAS_CACHE_DIR/evidence/``),
  claims as lock files whose modification time is the heartbeat.
* a study's store (``mtnas.study.StudyStore``): the study's own storage and artifact store, so
  workers on any machine that reaches the study share one search's trainings.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import stat
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from mtnas.core import (
    DamagedEntryWarning,
    MtnasError,
    MtnasWarning,
    create_exclusive,
    process_ended,
    process_gone,
    process_start,
    read_checked,
    short_repr,
    write_checked,
)
from mtnas.model import load_weights, save_weights
from mtnas.train._resume import Checkpoint, load_resume_state, save_resume_state

__all__ = ["CLOCK_SKEW", "EvidenceStore", "Holder", "LocalStore"]

#: Seconds a heartbeat may lie ahead of this host's clock (two hosts' clocks differ a little).
CLOCK_SKEW = 30.0
_MAX_PID = 2**31 - 1
_LOCK_MAX_BYTES = 4096
#: Seconds an empty lock may be one being written (on a file system without hard links).
_WRITING = 1.0


class EvidenceStore(Protocol):
    """Trained units by key; see the module docstring."""

    where: str  # what the store is, for messages

    def get(self, key: str) -> dict[str, Any] | None:
        """The unit's entry when it is trained (and not rejected), else None."""

    def claim(self, key: str) -> bool:
        """True when this process is to train the unit (no entry, no live claim of another)."""

    def holder(self, key: str) -> str | None:
        """Who holds the unit's claim (``host:pid``), for a waiting process's line; None: unknown."""

    def reject(self, key: str, entry: Mapping[str, Any], why: str) -> None:
        """``entry``, as ``get`` gave it, is not usable (``why``): a line names it, and it is treated
        as absent from now on (``get`` skips it, ``claim`` may take the unit)."""

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Store a trained unit's entry and end this process's claim."""

    def release(self, key: str) -> None:
        """End this process's claim without an entry (its training failed)."""

    def get_weights(self, key: str, tree_key: str) -> dict[str, torch.Tensor] | None:
        """The unit's trained weights when stored (None: not stored, damaged or another unit's)."""

    def put_weights(self, key: str, tree_key: str, state: Mapping[str, torch.Tensor]) -> None:
        """Keep a unit's trained weights."""

    def get_checkpoint(self, key: str, tree_key: str) -> Checkpoint | None:
        """The unit's checkpoint (its weights and the rest of its training's state at its stop)
        when stored; None when not, or (with a line naming it) damaged or another unit's."""

    def put_checkpoint(self, key: str, tree_key: str, checkpoint: Checkpoint) -> None:
        """Keep a unit's checkpoint: its weights (as ``put_weights``) and the rest of its state."""


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: a host, a process of it, the time that process started
    (``mtnas.core.process_start``; the pair names one process for good), and for a lock file a
    random token naming the claim itself (so an owner never removes or beats another's lock)."""

    host: str
    pid: int
    start: int | None
    token: str | None = None

    @classmethod
    def this_process(cls, token: str | None = None) -> Holder:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start(pid), token)

    def to_dict(self) -> dict[str, Any]:
        data = {"host": self.host, "pid": self.pid, "start": self.start}
        return data if self.token is None else {**data, "token": self.token}

    @classmethod
    def parse(cls, data: Any, *, token: bool) -> Holder:
        """The holder a claim names; a ``ValueError`` saying why when it names none (``token``: the
        claim must carry one, as a lock file does)."""
        if not isinstance(data, dict):
            raise ValueError(f"it holds {short_repr(data, 40)}, not a claim mtnas wrote")
        pid, host, start = data.get("pid"), data.get("host"), data.get("start")
        if type(pid) is not int or not 1 <= pid <= _MAX_PID:
            raise ValueError(f"its process id {short_repr(pid, 30)} is no process's")
        if not isinstance(host, str) or not host:
            raise ValueError(f"it names no host (process {pid})")
        if start is not None and type(start) is not int:
            raise ValueError(f"its process start {short_repr(start, 30)} is not a time")
        if token and not (isinstance(data.get("token"), str) and "start" in data):
            raise ValueError(f"it carries no token (process {pid}: not a claim this mtnas wrote)")
        return cls(host, pid, start, data.get("token") if token else None)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"

    def stale(self, beat: object, stale_after: float) -> str | None:
        """Why the claim is no one's any more, given its last heartbeat (``time.time()`` of its
        owner); None while it proves it is alive."""
        if self.host == socket.gethostname() and process_ended(self.pid, self.start):
            return (f"process {self.pid} that wrote it is gone" if process_gone(self.pid) else
                    f"process id {self.pid} names another process than the one that wrote it")
        if isinstance(beat, bool) or not isinstance(beat, (int, float)) or not math.isfinite(beat):
            return f"it has no heartbeat ({short_repr(beat, 20)})"
        now = time.time()
        if beat > now + CLOCK_SKEW:
            return f"its heartbeat lies {beat - now:,.0f} s in the future"
        if now - beat > stale_after:
            return f"no heartbeat from {self} for {now - beat:,.0f} s"
        return None


@contextlib.contextmanager
def _claiming(folder: Path) -> Iterator[None]:
    """Hold ``folder/.claiming`` exclusively: an ``flock``, which the system releases when its
    process dies, so it never goes stale (where the system has none, nothing is held)."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        yield
        return
    fd = os.open(folder / ".claiming", os.O_CREAT | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with contextlib.suppress(OSError):  # a file system without locks: exclusive creation still holds
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class LocalStore:
    """Evidence in a folder of this machine (``$MTNAS_CACHE_DIR/evidence`` by default).

    ``XX/<key>.json`` holds an entry, ``XX/<key>.safetensors`` the weights,
    ``XX/<key>.state.safetensors`` the rest of a checkpoint (``mtnas.train.save_resume_state``),
    ``XX/<key>.lock`` a claim: its :class:`Holder`, made complete or not at all (a hard link to a file already
    written), its modification time the heartbeat (touched every ``beat_every`` seconds while its
    owner holds it). Locks are judged, broken, created and removed only while the process holds the
    folder's ``.claiming`` lock (an ``flock``), so of two processes taking a stale lock over one
    does, and none ever removes a live one. A folder that cannot be written (full, read-only) is
    named once and units are trained here without being kept; a subfolder ``XX`` that is a
    symbolic link is named and not used.
    """

    stale_after = 120.0
    beat_every = 5.0

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.where = str(self.root)
        self._held: dict[str, str] = {}  # key -> token of this process's lock
        self._rejected: dict[str, Any] = {}  # key -> the entry found unusable
        self._guard = threading.Lock()
        self._beating: threading.Thread | None = None
        self._unwritable = False
        self._named: set[str] = set()  # what was said once

    def _path(self, key: str, suffix: str) -> Path:
        return self.root / key[:2] / f"{key}{suffix}"

    def _folder(self, key: str) -> Path | None:
        """The unit's subfolder, or None (named once) when it is a symbolic link or not a folder."""
        folder = self.root / key[:2]
        if folder.is_symlink() or (os.path.lexists(folder) and not folder.is_dir()):
            what = "a symbolic link" if folder.is_symlink() else "not a folder"
            self._say(f"{folder} is {what}: not used (its units are trained here and not kept); remove it",
                      once=str(folder))
            return None
        return folder

    def _say(self, message: str, *, once: str | None = None, category: type[Warning] = MtnasWarning) -> None:
        if once is not None:
            if once in self._named:
                return
            self._named.add(once)
        warnings.warn(message, category, stacklevel=3)

    def _cannot_write(self, exc: OSError) -> None:
        self._unwritable = True
        self._say(f"{self.root}: the evidence folder cannot be written ({exc.strerror or exc}): units are trained "
                  "here and not kept for other searches; free space or make it writable, or set MTNAS_CACHE_DIR",
                  once="unwritable")

    # -- entries ---------------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        def parse(content: Any) -> dict[str, Any]:
            if not isinstance(content, dict) or content.get("key") != key:
                raise ValueError(f"not the entry of unit {key[:12]}")
            return content

        folder = self._folder(key)
        if folder is None:
            return None
        # missing: None; damaged or edited (its checksum): None with a warning naming the file, once
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            entry = read_checked(folder / f"{key}.json", parse, "unit of trained evidence")
        for said in caught:
            self._say(str(said.message), once=str(said.message), category=said.category)
        return None if entry is None or entry == self._rejected.get(key) else entry

    def reject(self, key: str, entry: Mapping[str, Any], why: str) -> None:
        self._rejected[key] = dict(entry)
        self._say(f"{self._path(key, '.json')}: damaged unit of trained evidence, not used ({why}); it is made again",
                  category=DamagedEntryWarning)

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        folder = self._folder(key)
        try:
            if folder is not None and not self._unwritable:
                folder.mkdir(parents=True, exist_ok=True)
                write_checked(folder / f"{key}.json", {**entry, "key": key})
                self._rejected.pop(key, None)
        except OSError as exc:
            self._cannot_write(exc)
        finally:
            self.release(key)

    # -- claims ----------------------------------------------------------------------------------

    def claim(self, key: str) -> bool:
        with self._guard:
            if key in self._held:
                return False
        if self.get(key) is not None:
            return False
        folder = self._folder(key)
        if folder is None or self._unwritable:
            return True  # trained here, and not kept
        lock, token = folder / f"{key}.lock", uuid.uuid4().hex
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with _claiming(folder):  # no other process judges, breaks or creates a lock of this folder meanwhile
                if os.path.lexists(lock) and not self._take_over(key, lock):
                    return False
                self._create(lock, token)
        except FileExistsError:  # (a system without flock) another process created one first
            return False
        except OSError as exc:
            self._cannot_write(exc)
            return True
        with self._guard:
            self._held[key] = token
            if self._beating is None:
                self._beating = threading.Thread(target=self._beat, name="mtnas-evidence-lock-heartbeat", daemon=True)
                self._beating.start()
        if self.get(key) is None:
            return True
        self.release(key)  # trained by another process between the two looks
        return False

    @staticmethod
    def _create(lock: Path, token: str) -> None:
        """Create ``lock`` holding this process's claim, complete or not at all; ``FileExistsError``
        when one is there."""
        create_exclusive(lock, json.dumps(Holder.this_process(token).to_dict()))

    def _take_over(self, key: str, lock: Path) -> bool:
        """Whether ``lock`` is gone now: taken over (with a line) when stale, kept when alive. Called
        holding the folder's ``.claiming`` lock, so the lock judged is the lock removed."""
        why = self._stale(key, lock)
        if why is None:
            return False
        aside = lock.with_name(f"{lock.name}.{uuid.uuid4().hex}.stale")  # a folder may not go at once
        try:
            os.rename(lock, aside)
        except FileNotFoundError:
            return True  # its owner removed it meanwhile
        left = self._discard(aside)
        self._say(f"{lock}: a stale claim ({why}) is taken over" + (f"; it was moved to {aside}" if left else ""))
        return True

    @staticmethod
    def _discard(path: Path) -> bool:
        """Remove a lock moved aside; True when it stays (a folder that is not empty)."""
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        except OSError:
            return path.exists()
        return False

    def _stale(self, key: str, lock: Path) -> str | None:
        """Why the claim in ``lock`` is no one's; None while it is alive."""
        try:
            st = os.lstat(lock)
            if not stat.S_ISREG(st.st_mode):
                return "it is a folder or a special file, not a lock file"
            with open(lock, "rb") as f:
                raw = f.read(_LOCK_MAX_BYTES + 1)
        except FileNotFoundError:
            return "it was removed meanwhile"
        except OSError as exc:
            return f"it cannot be read ({exc.strerror or type(exc).__name__})"
        if not raw:
            return None if time.time() - st.st_mtime < _WRITING else "it is empty"
        try:
            data = json.loads(raw.decode())
        except (UnicodeDecodeError, RecursionError, ValueError):
            return f"it holds {short_repr(raw.decode(errors='replace'), 40)}, not a claim mtnas wrote"
        try:
            holder = Holder.parse(data, token=True)
        except ValueError as exc:
            return str(exc)
        with self._guard:
            if self._held.get(key) == holder.token:
                return None  # this store's own
        return holder.stale(st.st_mtime, self.stale_after)

    @staticmethod
    def _token(lock: Path) -> str | None:
        try:
            return Holder.parse(json.loads(lock.read_bytes()[:_LOCK_MAX_BYTES].decode()), token=True).token
        except (OSError, UnicodeDecodeError, RecursionError, ValueError):
            return None

    def holder(self, key: str) -> str | None:
        try:
            return str(Holder.parse(json.loads(self._path(key, ".lock").read_bytes()[:_LOCK_MAX_BYTES]), token=True))
        except (OSError, UnicodeDecodeError, RecursionError, ValueError):
            return None

    def _beat(self) -> None:
        """Touch this store's locks every ``beat_every`` seconds while it holds any."""
        while True:
            time.sleep(self.beat_every)
            with self._guard:
                held = dict(self._held)
                if not held:
                    self._beating = None
                    return
            for key, token in held.items():
                lock = self._path(key, ".lock")
                if self._token(lock) == token:
                    with contextlib.suppress(OSError):
                        os.utime(lock)
                    continue
                with self._guard:
                    if self._held.get(key) != token:
                        continue  # released meanwhile
                    del self._held[key]
                self._say(f"{lock}: this process's claim of unit {key[:12]} was taken over by another process "
                          f"(it looked dead: no heartbeat for {self.stale_after:.0f} s); both train it")

    def release(self, key: str) -> None:
        with self._guard:
            token = self._held.pop(key, None)
        lock = self._path(key, ".lock")
        if token is None:
            return
        def remove() -> None:
            if self._token(lock) == token:
                with contextlib.suppress(OSError):
                    lock.unlink()

        try:
            with _claiming(lock.parent):
                remove()
        except OSError:  # its .claiming cannot be opened: removed all the same
            remove()

    # -- weights ---------------------------------------------------------------------------------

    def get_weights(self, key: str, tree_key: str) -> dict[str, torch.Tensor] | None:
        folder = self._folder(key)
        if folder is None or not os.path.lexists(path := folder / f"{key}.safetensors"):
            return None
        try:
            return load_weights(path, tree_key=tree_key, metadata={"unit": key})
        except MtnasError as exc:  # damaged, or another unit's: trained again, and written anew
            self._say(f"{exc}; not used, they are trained again", category=DamagedEntryWarning)
            return None

    def put_weights(self, key: str, tree_key: str, state: Mapping[str, torch.Tensor]) -> None:
        folder = self._folder(key)
        if folder is None or self._unwritable:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_weights(folder / f"{key}.safetensors", state, tree_key=tree_key, extra_metadata={"unit": key})
        except OSError as exc:
            self._cannot_write(exc)

    # -- checkpoints -----------------------------------------------------------------------------

    def get_checkpoint(self, key: str, tree_key: str) -> Checkpoint | None:
        folder = self._folder(key)
        if folder is None or not os.path.lexists(path := folder / f"{key}.state.safetensors"):
            return None
        weights = self.get_weights(key, tree_key)
        if weights is None:
            return None
        try:
            return load_resume_state(path, weights, tree_key=tree_key, unit=key)
        except MtnasError as exc:  # damaged, or another unit's: the unit is trained without it
            self._say(f"{exc}; not resumed from", category=DamagedEntryWarning)
            return None

    def put_checkpoint(self, key: str, tree_key: str, checkpoint: Checkpoint) -> None:
        self.put_weights(key, tree_key, checkpoint.weights)
        folder = self._folder(key)
        if folder is None or self._unwritable:
            return
        try:
            save_resume_state(folder / f"{key}.state.safetensors", checkpoint, tree_key=tree_key, unit=key)
        except OSError as exc:
            self._cannot_write(exc)
