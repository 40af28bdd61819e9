"""A run name, claimed by one search before anything is read or written.

Two ``mtnas search --name c2`` started a moment apart must not both set up ``runs/c2``: the second
would overwrite the first's ``run.json`` and ``space.yaml`` while its study runs. So a new search
first claims the folder atomically: it creates ``runs/NAME/`` (or takes an existing folder that
holds no run, such as the one ``mtnas demo`` prepares) and then, in it, the file ``.starting``
with ``O_EXCL``, which only one process can do; ``run.json`` is checked only after that. The
claim holds while the run is set up (the space loaded, the files written, the study created).
If setting up fails (a space that does not load, a storage that does not open, Ctrl-C), what the
search created is removed again, so the name is free and no half-made run blocks it; once set
up, ``.starting`` is removed and the run is one ``--resume`` continues.

A ``.starting`` whose process is gone from this machine (killed while setting up) is stale:
``--resume`` takes over such a folder, and a new search says how to free the name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from mtnas.core import MtnasError, process_gone

__all__ = ["STARTING", "check_not_starting", "claim_new_run"]

#: The claim file a search holds in a run folder while it sets the run up (its process id inside).
STARTING = ".starting"


def _claimant(root: Path) -> int | None:
    """The process id in ``root``'s claim file (None: unreadable or being written)."""
    try:
        return int((root / STARTING).read_text().strip())
    except (OSError, ValueError):
        return None


def _held_message(root: Path) -> str:
    pid = _claimant(root)
    if pid is not None and process_gone(pid):
        return (f"{root}: a search that was setting it up ended without finishing (process {pid}); "
                f"continue it with --resume if {root / 'run.json'} exists, else remove the folder {root} "
                "and start again, or choose another --name")
    who = f" (process {pid})" if pid is not None else ""
    return (f"{root}: another 'mtnas search'{who} is setting up a run of this name right now; "
            "choose another --name, or wait for it and continue it with --resume")


def check_not_starting(root: Path) -> None:
    """Refuse to resume a run another process is still setting up; clear a claim whose process is gone."""
    if not (root / STARTING).exists():
        return
    pid = _claimant(root)
    if pid is None or not process_gone(pid):
        raise MtnasError(_held_message(root))
    (root / STARTING).unlink(missing_ok=True)


@contextlib.contextmanager
def claim_new_run(root: Path) -> Iterator[None]:
    """Hold ``root`` for a new run while the block sets it up (see the module docstring).

    Raises:
        MtnasError: ``root`` holds a run already (``run.json``), another search is setting one up
            there, or the folder cannot be created.
    """
    made = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        before = set(os.listdir(root))
        fd = os.open(root / STARTING, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise MtnasError(_held_message(root)) from None
    except OSError as exc:
        raise MtnasError(f"cannot create the run folder {root}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
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
