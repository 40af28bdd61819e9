"""Which running trials still have a process behind them.

Every trial records, before anything else, the host and process id that run it. A RUNNING trial
whose process is gone from this host (killed, crashed, or the whole search interrupted) is failed
at once and its parameters enqueued again, so ``--resume`` or any worker on the machine picks the
same trial up without waiting for its heartbeat to go stale. Trials of other hosts are left to the
heartbeat (``mtnas.study._storage``): their process cannot be seen from here.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path

import optuna

__all__ = ["mark_alive", "reap_dead_trials", "wait_for_turn"]

_RETRIED = ("fixed_tree",)  # user attributes a retry must keep (what an enqueued trial evaluates)


def mark_alive(trial: optuna.Trial) -> None:
    """Record the host and process that run ``trial``."""
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie, killed but not yet waited for, has too)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's process
        return False
    try:  # Linux: a zombie still answers signal 0; its state in /proc says it is dead
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def reap_dead_trials(study: optuna.Study, reason: str = "its process {pid} is gone") -> list[int]:
    """Fail each RUNNING trial of this host whose process is gone, and enqueue it again.

    Returns the failed trials' numbers. The reason is kept in the study (``fail_reason:N``), since
    the trial's own process can no longer write it.
    """
    host, failed = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or not isinstance(pid, int) or pid == os.getpid() or not _gone(pid):
            continue
        try:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        except ValueError:  # another process failed it first: it enqueued the retry
            continue
        study.set_user_attr(f"fail_reason:{t.number}", reason.format(pid=pid))
        keep = {k: t.user_attrs[k] for k in _RETRIED if k in t.user_attrs}
        study.enqueue_trial(t.params, user_attrs={**keep, "retry_of": t.number})
        failed.append(t.number)
    return failed


def wait_for_turn(trial: optuna.Trial, target: int, *, poll: float = 1.0) -> bool:
    """Whether ``trial`` should run, so that the study ends with exactly ``target`` completed trials.

    A trial runs when the completed trials and the running ones numbered before it stay below
    ``target``; while they do not, it waits (dead trials are reaped meanwhile) for one of them to
    finish or fail. False once ``target`` trials are complete: this one is not needed.
    """
    study = trial.study
    while True:
        reap_dead_trials(study)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # trials of other machines, by their heartbeat (RDB)
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                          optuna.trial.TrialState.RUNNING))
        complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        if complete >= target:
            return False
        ahead = sum(t.state == optuna.trial.TrialState.RUNNING and t.number < trial.number for t in trials)
        if complete + ahead < target:
            return True
        time.sleep(poll)
