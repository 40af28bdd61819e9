"""Crash-safe file writes: write a temporary file beside the target, then rename over it; a file
created only where none is, whole or not at all (:func:`create_exclusive`: claims); and a set of
files written into a folder all or nothing (:func:`replace_files`).

A write that fails (a full disk, a read-only folder) raises ``OSError`` naming the file it was
writing, whatever step failed: ``write()`` itself names none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "create_exclusive", "naming", "replace_files"]


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Re-raise an ``OSError`` that names no file as one that names ``path`` (same errno)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half."""
    path = Path(path)
    with naming(path):
        _atomic_write(path, data)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_exclusive(path: str | Path, text: str) -> None:
    """Create ``path`` holding ``text``, complete or not at all (a reader never sees it half
    written: it is a hard link to a finished temporary file); ``FileExistsError`` when one is there.
    On a file system without hard links it is created exclusively, then written at once."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(text)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


@contextlib.contextmanager
def replace_files(folder: str | Path, owned: Iterable[str]) -> Iterator[Path]:
    """Write a set of files into ``folder`` all or nothing.

    The caller writes them into the staging folder this yields (beside ``folder``, on the same
    file system). When the block ends without an error, each staged file replaces its namesake
    in ``folder`` (a rename), and the files named in ``owned`` that were not written this time are
    removed: the folder holds this write's files only, never a leftover of an earlier one. On an
    error ``folder`` is left as it was. Other files in ``folder`` are not touched.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(17, "exists and is not a folder", str(folder))
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".staging"))
    try:
        try:
            yield stage
        except OSError as exc:  # name the file as the caller knows it, not its staged copy
            staged = Path(exc.filename) if isinstance(exc.filename, str) else None
            if staged is None or stage not in staged.parents:
                raise
            raise OSError(exc.errno, exc.strerror, str(folder / staged.relative_to(stage))) from exc
        if not folder.exists():
            os.rename(stage, folder)  # all at once
            return
        written = {p.name for p in stage.iterdir()}
        for name in sorted(written):
            target = folder / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(stage / name, target)
        for name in set(owned) - written:
            (folder / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
