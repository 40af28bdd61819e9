"""Where a study lives: SQLite or PostgreSQL (Optuna's RDBStorage), or a journal file for local workers.

Storage URLs are written as users write them: ``sqlite:///runs/dg1/study.db``,
``postgresql://user@host/db`` (the driver is psycopg 3, SQLAlchemy's default for that scheme,
installed by ``pip install 'mtnas[postgres]'``) or ``journal:///runs/dg1/journal.log``. A file's
path is read as SQLAlchemy reads it: what follows the third slash, relative to the current folder
(``sqlite:///rel.db``) unless it starts with a slash itself (``sqlite:////abs/study.db``). A run
records its storage with the path made absolute (:func:`absolute_url`), so every command and
worker reads the same file from any folder.

On an RDB storage every running trial sends Optuna heartbeats; a trial silent for the grace period
(its machine died, say) is failed and retried by the next trial to start anywhere
(``RetryHeartbeatStaleTrialCallback``). A trial of a process that is gone from *this* machine is
retried at once, without waiting (``mtnas.study._liveness``); that covers the journal file too,
whose workers all run on one machine.

Opening a storage to read (``create=False``) never creates one: a SQLite or journal file that is
not there is an error. A server that cannot be reached, a wrong password, a missing driver: each
is one line that says which, with the URL's password masked.
"""

from __future__ import annotations

import os
import re
import warnings

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

from mtnas.core import MtnasError, first_line, short_text

__all__ = ["FILE_SCHEMES", "HEARTBEAT", "MAX_LOCAL_WORKERS", "absolute_url", "file_path", "heartbeat_settings",
           "mask_url", "open_storage"]

#: Seconds between a running trial's heartbeats, and of silence after which it counts as dead
#: (``MTNAS_HEARTBEAT=interval,grace`` overrides them).
HEARTBEAT = (5, 20)
MAX_RETRY = 2
#: Seconds a SQLite connection waits for another's lock before "database is locked" (sqlite3's
#: default is 5): the local workers, their heartbeat threads and a reader such as ``mtnas trials``
#: share one file, and on a loaded machine a write can wait longer than that.
SQLITE_BUSY_SECONDS = 60.0
#: The URL prefixes of storages that are a file on this machine (the path follows).
FILE_SCHEMES = ("sqlite:///", "journal:///")

#: The most local worker processes ``--workers`` starts, on one journal file (each trains networks:
#: more than the cores only queue up; this bound stops a typo such as 100000 from forking a machine
#: to a halt).
MAX_LOCAL_WORKERS = 64

_PASSWORD = re.compile(r"(://[^:/@#]*:)[^@/#]*@")


def mask_url(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@host``) shown as ``***``, for messages."""
    return _PASSWORD.sub(r"\1***@", url)


def file_path(url: str) -> str | None:
    """The file of a ``sqlite:///`` or ``journal:///`` URL as SQLAlchemy reads it (what follows the
    third slash, relative unless it starts with ``/``; a query string aside); None for a server's URL."""
    scheme = next((s for s in FILE_SCHEMES if url.startswith(s)), None)
    return None if scheme is None else url[len(scheme):].partition("?")[0]


def absolute_url(url: str) -> str:
    """``url`` with the path of a file storage made absolute against the current folder (a server's
    URL as it is): ``sqlite:///rel.db`` -> ``sqlite:////here/rel.db``."""
    path = file_path(url)
    if path is None or not path:
        return url
    scheme = next(s for s in FILE_SCHEMES if url.startswith(s))
    return scheme + os.path.abspath(path) + url[len(scheme) + len(path):]


def heartbeat_settings() -> tuple[int, int]:
    override = os.environ.get("MTNAS_HEARTBEAT")
    if not override:
        return HEARTBEAT
    try:
        interval, grace = (int(x) for x in override.split(","))
    except ValueError:
        raise MtnasError(f"MTNAS_HEARTBEAT={override!r}: expected 'interval,grace' in whole seconds, e.g. 5,20") from None
    if not 1 <= interval <= grace <= 86_400:
        raise MtnasError(f"MTNAS_HEARTBEAT={override!r}: expected 1 <= interval <= grace <= 86400 seconds, e.g. 5,20")
    return interval, grace


def open_storage(url: str, *, create: bool = True) -> BaseStorage:
    """``journal:///path`` (local workers) or an RDB URL (``sqlite:///``, ``postgresql://``).

    Args:
        url: the storage URL.
        create: whether a missing SQLite or journal file may be created (a search), or must
            exist (the commands that read a run).
    """
    shown = mask_url(url)
    path = file_path(url)
    if path is not None:
        if not path:
            raise MtnasError(f"cannot open the study storage {shown!r}: it names no file; e.g. sqlite:///study.db")
        if not create and not os.path.isfile(path):
            raise MtnasError(f"cannot open the study storage {shown!r}: no such file {path!r} (nothing was created)")
        if not os.path.isdir(os.path.dirname(path) or "."):
            raise MtnasError(f"cannot open the study storage {shown!r}: no folder {os.path.dirname(path)!r}")
    if url.startswith("journal:///"):
        return JournalStorage(JournalFileBackend(path))
    interval, grace = heartbeat_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=interval, grace_period=grace, heartbeat_stale_trial_callback=retry,
                engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_SECONDS}} if url.startswith("sqlite") else None,
            )
        except Exception as exc:  # sqlalchemy raises many kinds: a bad URL, a server that does not answer
            raise MtnasError(f"cannot open the study storage {shown!r}: {_storage_problem(exc, url)}") from None


def _storage_problem(exc: BaseException, url: str) -> str:
    """What failed when opening an RDB storage, in words, with what to do."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    unknown = next((e for e in chain if type(e).__name__ == "NoSuchModuleError"), None)
    if unknown is not None and "sqlalchemy.dialects:" in str(unknown):  # no database of that name, or driver
        scheme = url.partition("://")[0] if "://" in url else url
        return (f"unknown storage scheme {short_text(scheme, 40)!r}; valid: sqlite:///FILE, journal:///FILE, "
                "postgresql://USER@HOST/DB (or another database SQLAlchemy knows, e.g. mysql://USER@HOST/DB)")
    if any(isinstance(e, ModuleNotFoundError) for e in chain) or "NoSuchModuleError" in {type(e).__name__ for e in chain}:
        missing = next((e.name for e in chain if isinstance(e, ModuleNotFoundError) and e.name), None)
        return (f"the database driver{f' ({missing})' if missing else ''} is not installed; for postgresql:// URLs: "
                "pip install 'mtnas[postgres]'")
    text = mask_url(first_line(exc)).removeprefix("(psycopg.OperationalError) ")
    if type(exc).__name__ == "OperationalError" and "sqlite" not in type(exc).__module__ + text.lower():
        return (f"the database server refused or did not answer ({text}); check the host, port, user, password "
                "and database name, and that the server runs")
    return text
