"""Which running trials still have a process behind them.

Every trial records, before anything else, the host and process id that run it. A RUNNING trial
whose process is gone from this host (killed, crashed, or the whole search interrupted) is failed
at once and its parameters enqueued again, so ``--resume`` or any worker on the machine picks the
same trial up without waiting for its heartbeat to go stale. Trials of other hosts are left to the
heartbeat (``mtnas.study._storage``): their process cannot be seen from here.

A process killed in the few milliseconds between Optuna creating its trial and the trial
recording its process leaves a RUNNING trial that names no process and sends no heartbeat; such
a trial is failed once it is older than the heartbeat's grace period. When the study holds its
trials, :func:`settle` fails the dead trials without retrying them: a finished study has no
trial left RUNNING.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import warnings

import optuna

from mtnas.core import process_gone
from mtnas.study._storage import heartbeat_settings

__all__ = ["finished_elsewhere", "mark_alive", "reap_dead_trials", "settle", "wait_for_turn"]

_RETRIED = ("fixed_tree",)  # user attributes a retry must keep (what an enqueued trial evaluates)


def mark_alive(trial: optuna.Trial) -> None:
    """Record the host and process that run ``trial``."""
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())


def finished_elsewhere(exc: BaseException) -> bool:
    """Whether ``exc`` says another process finished the trial this one was about to finish: Optuna
    raises ``ValueError("Cannot tell a FAIL trial.")`` when it reads the trial finished already, and
    ``UpdateFinishedTrialError`` when it finished between that read and the write."""
    if isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
        return True
    return isinstance(exc, ValueError) and str(exc).startswith("Cannot tell a ")


def _orphan(trial: optuna.trial.FrozenTrial, grace: float) -> bool:
    """A RUNNING trial that never recorded its process, older than ``grace`` seconds."""
    if "pid" in trial.user_attrs or trial.datetime_start is None:
        return False
    return (datetime.datetime.now() - trial.datetime_start).total_seconds() > grace


def reap_dead_trials(study: optuna.Study, reason: str = "its process {pid} is gone", *, retry: bool = True) -> list[int]:
    """Fail each RUNNING trial of this host whose process is gone (and each orphan, see the module
    docstring), and enqueue it again unless ``retry`` is False.

    Returns the failed trials' numbers. The reason is kept in the study (``fail_reason:N``), since
    the trial's own process can no longer write it.
    """
    host, failed = socket.gethostname(), []
    grace = heartbeat_settings()[1]
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if _orphan(t, grace):
            why = f"its process died before it recorded itself (no heartbeat for {grace} s)"
        elif t.user_attrs.get("host") == host and isinstance(pid, int) and pid != os.getpid() and process_gone(pid):
            why = reason.format(pid=pid)
        else:
            continue
        try:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as exc:
            if finished_elsewhere(exc):  # another process failed it first (and enqueued the retry)
                continue
            raise
        study.set_user_attr(f"fail_reason:{t.number}", why)
        if retry:
            keep = {k: t.user_attrs[k] for k in _RETRIED if k in t.user_attrs}
            study.enqueue_trial(t.params, user_attrs={**keep, "retry_of": t.number})
        failed.append(t.number)
    return failed


def settle(study: optuna.Study, target: int, *, poll: float = 1.0) -> None:
    """Once the study holds ``target`` completed trials, fail the trials of processes that are gone
    (not retried: the study needs no more), waiting at most the heartbeat's grace period for a
    trial that has not recorded its process yet. Live trials, and those of other hosts (left to
    their heartbeat), are not touched."""
    complete = (optuna.trial.TrialState.COMPLETE,)
    if len(study.get_trials(deepcopy=False, states=complete)) < target:
        return
    deadline = time.monotonic() + heartbeat_settings()[1] + poll
    while True:
        reap_dead_trials(study, retry=False)
        young = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                 if "pid" not in t.user_attrs]
        if not young or time.monotonic() > deadline:
            return
        time.sleep(poll)


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
