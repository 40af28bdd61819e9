"""The progress of a study on the terminal: completed trials against the target, what the
running trial is doing, and when the study will be done.

The bar counts completed trials of the whole study (other workers' too). Beside it: each running
trial of this process and its phase (``search``, ``proxy training``; the phase's own bar below
shows its epoch), the last result, and an ETA from the trials done so far: the mean duration of
the completed searched trials (the enqueued references are quick and say little about the rest)
times the trials still to run, less what the running ones have done, shared among the trials
running at once. Before the first searched trial completes there is nothing to measure, and the
bar says so instead of extrapolating tqdm's rate of the instant references.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import optuna

__all__ = ["StudyProgress", "format_seconds", "study_eta"]

_DONE = optuna.trial.TrialState.COMPLETE
_RUNNING = optuna.trial.TrialState.RUNNING


def _seconds(trial: optuna.trial.FrozenTrial, now: dt.datetime) -> float | None:
    if trial.datetime_start is None:
        return None
    end = trial.datetime_complete or now
    return max((end - trial.datetime_start).total_seconds(), 0.0)


def study_eta(trials: Sequence[optuna.trial.FrozenTrial], target: int, now: dt.datetime | None = None) -> float | None:
    """Seconds until ``target`` trials are complete, from the searched trials done so far; None
    before one is done. 0 when the study holds ``target`` already."""
    now = now or dt.datetime.now()
    complete = [t for t in trials if t.state == _DONE]
    remaining = target - len(complete)
    if remaining <= 0:
        return 0.0
    took = [s for t in complete if not t.user_attrs.get("fixed_tree") and (s := _seconds(t, now)) is not None]
    if not took:
        return None
    mean = sum(took) / len(took)
    running = [t for t in trials if t.state == _RUNNING][:remaining]
    left_of_running = sum(max(mean - (_seconds(t, now) or 0.0), 0.0) for t in running)
    return (left_of_running + (remaining - len(running)) * mean) / max(1, len(running))


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class StudyProgress:
    """The trials bar of one process (tqdm, on stderr; nothing when ``enabled`` is False)."""

    def __init__(self, study: optuna.Study, target: int, *, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.study, self.target = study, target
        self.running: dict[int, str] = {}
        self.last = ""
        self.bar = tqdm(total=target, initial=self._completed(), desc="trials", unit="trial", disable=not enabled,
                        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar:16}| {elapsed}{postfix}")
        self._show()

    def _completed(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(_DONE,)))

    def phase(self, number: int, name: str) -> None:
        """Trial ``number`` of this process entered phase ``name``."""
        self.running[number] = name
        self._show()

    def trial_done(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """An Optuna callback: a trial of this process ended (any state)."""
        self.running.pop(trial.number, None)
        self.bar.update(self._completed() - self.bar.n)
        dm = trial.user_attrs.get("delta_m")
        if trial.state == _DONE and dm is not None:
            self.last = f"last: trial {trial.number} {trial.user_attrs.get('tree', '')[:32]} delta-m {dm:+.2f}%"
        self._show()

    def eta(self) -> str:
        seconds = study_eta(self.study.get_trials(deepcopy=False), self.target)
        if seconds is None:
            return "ETA after the first searched trial"
        return f"ETA {format_seconds(seconds)}"

    def _show(self) -> None:
        if self.bar.disable:
            return
        parts = [f"trial {n}: {p}" for n, p in sorted(self.running.items())] + [self.eta()]
        self.bar.set_postfix_str(" | ".join(parts + ([self.last] if self.last else [])))

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> StudyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
