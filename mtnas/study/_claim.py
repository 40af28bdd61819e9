"""A run name, claimed by one search before anything is read or written.

Two ``mtnas search --name c2`` started a moment apart must not both set up ``runs/c2``: the second
would overwrite the first's ``run.json`` and ``space.yaml`` while its study runs. So a new search
first claims the folder atomically: it creates ``runs/NAME/`` (or takes an existing folder that
holds no run, such as the one ``mtnas demo`` prepares) and then, in it, the file ``.starting``,
complete or not at all (a hard link to a file already written, which only one process can make);
``run.json`` is checked only after that. The
claim holds while the run is set up (the space loaded, the files written, the study created).
If setting up fails (a space that does not load, a storage that does not open, Ctrl-C), what the
search created is removed again, so the name is free and no half-made run blocks it; once set
up, ``.starting`` is removed and the run is one ``--resume`` continues.

A claim proves it is alive: it holds its owner's process id, host and the time that process
started (``mtnas.core.process_start``), and it is held only while that very process runs on this
host (a process id reused by another process does not count), or, for a claim of another host
that this one cannot see, for ``CLAIM_MAX_AGE`` seconds after it was written. Anything else (a
killed search's claim, a hand-written ``1``, an empty file, text) is stale: a new search or a
``--resume`` takes it over, with a line saying so. A claim that cannot be read at all (a folder
of that name, a file this user may not read) is named, to be removed by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

from mtnas.core import MtnasError, MtnasWarning, create_exclusive, process_gone, process_start, short_repr

__all__ = ["CLAIM_MAX_AGE", "STARTING", "check_not_starting", "claim_new_run"]

#: The claim file a search holds in a run folder while it sets the run up.
STARTING = ".starting"
#: Seconds a claim of another host (whose process this one cannot see) is held after it was written.
CLAIM_MAX_AGE = 6 * 3600
#: The largest claim file read (one is under a hundred bytes).
_CLAIM_MAX_BYTES = 4096
_MAX_PID = 2**31 - 1


def _claim_text() -> str:
    pid = os.getpid()
    return json.dumps({"pid": pid, "host": socket.gethostname(), "start": process_start(pid)})


def _state(root: Path) -> tuple[str, str]:
    """Whether the claim in ``root`` is ``"alive"``, ``"stale"`` or ``"unreadable"``, and its owner
    or its fault in words."""
    path = root / STARTING
    try:
        if path.is_dir() or (path.exists() and not path.is_file()):
            return "unreadable", "is a folder or a special file, not a claim file"
        with open(path, "rb") as f:
            raw = f.read(_CLAIM_MAX_BYTES + 1)
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "stale", "it was removed meanwhile"
    except OSError as exc:
        return "unreadable", f"cannot be read ({exc.strerror or type(exc).__name__})"
    try:
        claim = json.loads(raw.decode()) if len(raw) <= _CLAIM_MAX_BYTES else None
    except (UnicodeDecodeError, ValueError):
        claim = None
    pid = claim.get("pid") if isinstance(claim, dict) else None
    if not (type(pid) is int and 1 <= pid <= _MAX_PID and isinstance(claim.get("host"), str)):
        return "stale", f"it holds {short_repr(raw.decode(errors='replace'), 40)}, not a claim of a running search"
    here = claim["host"] == socket.gethostname()
    who = f"process {pid}" + ("" if here else f" on {claim['host']}")
    if here:
        if process_gone(pid):
            return "stale", f"{who} that wrote it is gone"
        started, now = claim.get("start"), process_start(pid)
        if started is not None and now is not None:  # the very process that wrote it, or its id reused
            return ("alive", who) if now == started else ("stale", f"{who} that wrote it is gone (the id is "
                                                                   "another process's now)")
    if age > CLAIM_MAX_AGE:  # a process this host cannot see, or cannot tell from another
        return "stale", f"{who} wrote it {age / 3600:.0f} hours ago"
    return "alive", who


def _held_message(root: Path, who: str) -> str:
    return (f"{root}: another 'mtnas search' ({who}) is setting up a run of this name right now; choose another "
            "--name, or wait for it to finish setting up and continue it with --resume")


def _take_over(root: Path) -> bool:
    """Settle the claim in ``root``: refuse a live or unreadable one, remove a stale one with a
    line saying so. Returns whether there was a stale claim."""
    state, about = _state(root)
    path = root / STARTING
    if state == "alive":
        raise MtnasError(_held_message(root, about))
    if state == "unreadable":
        raise MtnasError(f"{path} {about}: it is no claim mtnas wrote; remove it, then run the command again")
    aside = root / f"{STARTING}.{uuid.uuid4().hex}"  # moved aside first: of two processes taking it over, one does
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    aside.unlink(missing_ok=True)
    warnings.warn(f"{path}: a stale claim ({about}) is taken over", MtnasWarning, stacklevel=3)
    return True


def _create_claim(root: Path) -> None:
    """Create ``root/STARTING`` holding this process's claim, complete or not at all (a reader never
    sees it half written); ``FileExistsError`` when one is there."""
    create_exclusive(root / STARTING, _claim_text())


def check_not_starting(root: Path) -> bool:
    """Refuse to resume a run another process is still setting up (or whose claim cannot be read);
    take over a stale claim. Returns whether there was one: its search never finished setting up."""
    if not os.path.lexists(root / STARTING):
        return False
    return _take_over(root)


@contextlib.contextmanager
def claim_new_run(root: Path) -> Iterator[None]:
    """Hold ``root`` for a new run while the block sets it up (see the module docstring).

    Raises:
        MtnasError: ``root`` holds a run already (``run.json``), another search is setting one up
            there, its claim cannot be read, or the folder cannot be created.
    """
    made = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        before = set(os.listdir(root)) - {STARTING}
        try:
            _create_claim(root)
        except FileExistsError:
            _take_over(root)
            _create_claim(root)  # a process that took it over at the same moment wins: FileExistsError again
    except FileExistsError:
        raise MtnasError(_held_message(root, _state(root)[1])) from None
    except OSError as exc:
        raise MtnasError(f"cannot create the run folder {root}: {exc.strerror or exc}") from None
    if (root / "run.json").exists():  # checked after the claim: a run finished setting up before it
        (root / STARTING).unlink()
        raise MtnasError(f"{root} exists already: use --resume to continue it, or another --name")
    try:
        yield
    except BaseException:
        _remove_new(root, before, made)
        raise
    (root / STARTING).unlink(missing_ok=True)


def _remove_new(root: Path, before: set[str], made: bool) -> None:
    """Remove what the failed setting-up created in ``root`` (and ``root`` itself when it made it)."""
    for name in set(os.listdir(root)) - before:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):
            root.rmdir()
