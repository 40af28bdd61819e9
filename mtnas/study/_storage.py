"""Where a study lives: SQLite or PostgreSQL (Optuna's RDBStorage), or a journal file for local workers.

Storage URLs are written as users write them: ``sqlite:///runs/dg1/study.db``,
``postgresql://user@host/db`` (the driver is psycopg 3, SQLAlchemy's default for that scheme,
installed by ``pip install 'mtnas[postgres]'``) or ``journal:///abs/path/journal.log``.

On an RDB storage every running trial sends Optuna heartbeats; a trial silent for the grace period
(its machine died, say) is failed and retried by the next trial to start anywhere
(``RetryHeartbeatStaleTrialCallback``). A trial of a process that is gone from *this* machine is
retried at once, without waiting (``mtnas.study._liveness``); that covers the journal file too,
whose workers all run on one machine.
"""

from __future__ import annotations

import os
import warnings

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

from mtnas.core import MtnasError

__all__ = ["HEARTBEAT", "heartbeat_settings", "open_storage"]

#: Seconds between a running trial's heartbeats, and of silence after which it counts as dead
#: (``MTNAS_HEARTBEAT=interval,grace`` overrides them).
HEARTBEAT = (5, 20)
MAX_RETRY = 2


def heartbeat_settings() -> tuple[int, int]:
    override = os.environ.get("MTNAS_HEARTBEAT")
    if not override:
        return HEARTBEAT
    try:
        interval, grace = (int(x) for x in override.split(","))
    except ValueError:
        raise MtnasError(f"MTNAS_HEARTBEAT={override!r}: expected 'interval,grace' in whole seconds, e.g. 5,20") from None
    return interval, grace


def open_storage(url: str) -> BaseStorage:
    """``journal:///path`` (local workers) or an RDB URL (``sqlite:///``, ``postgresql://``)."""
    if url.startswith("journal:///"):
        path = url[len("journal://"):]
        if not os.path.isdir(os.path.dirname(path) or "."):
            raise MtnasError(f"cannot open the study storage {url!r}: no folder {os.path.dirname(path)!r}")
        return JournalStorage(JournalFileBackend(path))
    interval, grace = heartbeat_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=interval, grace_period=grace, heartbeat_stale_trial_callback=retry,
            )
        except Exception as exc:  # sqlalchemy raises many kinds: a bad URL, a server that does not answer
            text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = "; install the driver: pip install 'mtnas[postgres]'" if "psycopg" in text or "DB access" in text else ""
            raise MtnasError(f"cannot open the study storage {url!r}: {text}{hint}") from None
