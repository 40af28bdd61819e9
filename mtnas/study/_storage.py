"""Where a study lives: SQLite or PostgreSQL (Optuna's RDBStorage) or a journal file for local workers.

Every kind records heartbeats of running trials. A trial whose process was killed stops beating;
after the grace period the next trial to start in any process fails it and enqueues a retry
(``RetryHeartbeatStaleTrialCallback``). RDBStorage has heartbeats built in; Optuna's
JournalStorage has none, so :class:`HeartbeatJournalStorage` adds them as trial system attributes.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from mtnas.core import MtnasError

__all__ = ["HEARTBEAT", "HeartbeatJournalStorage", "heartbeat_settings", "open_storage"]

#: Seconds between a running trial's heartbeats, and of silence after which it counts as dead
#: (``MTNAS_HEARTBEAT=interval,grace`` overrides them).
HEARTBEAT = (5, 20)
MAX_RETRY = 2
_BEAT = "mtnas:heartbeat"


def heartbeat_settings() -> tuple[int, int]:
    override = os.environ.get("MTNAS_HEARTBEAT")
    if not override:
        return HEARTBEAT
    try:
        interval, grace = (int(x) for x in override.split(","))
    except ValueError:
        raise MtnasError(f"MTNAS_HEARTBEAT={override!r}: expected 'interval,grace' in whole seconds, e.g. 5,20") from None
    return interval, grace


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's JournalStorage with heartbeats: a running trial writes the time into a system
    attribute every ``interval`` seconds; one silent for ``grace`` seconds counts as stale.

    Processes share one machine's clock (a journal file is local), so wall times compare.
    """

    def __init__(self, path: str, *, interval: int, grace: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        super().__init__(JournalFileBackend(path))
        self._interval, self._grace, self._stale_callback = interval, grace, stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, _BEAT, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # A retried trial inherits its predecessor's attributes: count from its own start too.
            started = t.datetime_start.timestamp() if t.datetime_start else now
            if now - max(t.system_attrs.get(_BEAT, 0.0), started) > self._grace:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_callback


def open_storage(url: str) -> BaseStorage:
    """``journal:///path`` (local workers) or an RDB URL (``sqlite:///``, ``postgresql://``), with heartbeats."""
    interval, grace = heartbeat_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        if url.startswith("journal:///"):
            return HeartbeatJournalStorage(url[len("journal://"):], interval=interval, grace=grace, stale_callback=retry)
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=interval, grace_period=grace, heartbeat_stale_trial_callback=retry,
            )
        except Exception as exc:  # sqlalchemy raises many kinds: a bad URL, a server that does not answer
            hint = "; install the driver: pip install 'mtnas[postgres]'" if "psycopg" in str(exc) else ""
            raise MtnasError(f"cannot open the study storage {url!r}: {str(exc).splitlines()[0]}{hint}") from None
