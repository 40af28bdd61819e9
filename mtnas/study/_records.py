"""What a study read from its storage must hold, checked before any command uses it.

A study's storage is data anyone with access can edit (a shared PostgreSQL server, a copied
``study.db``), and readers (``mtnas trials``, ``show``, ``plot``, ``export``, ``report``) index its
attributes directly. So :func:`check_study` reads the mtnas settings and every trial's user
attributes once, checks each against the kind mtnas writes (a finite number, a count, a text, a
mapping of artifact ids, ...), and refuses a study that deviates in one line naming the trial
and the key. A completed trial must carry what readers take from it (its tree, delta-m and cost)
with finite objective values: a NaN never reaches a plot axis or ``--json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from mtnas.core import MtnasError, short_repr, short_text

__all__ = ["check_settings", "check_study", "check_trial"]

Check = tuple[Callable[[Any], bool], str]


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _text(v: Any) -> bool:
    if not isinstance(v, str) or len(v) > 100_000:
        return False
    try:
        v.encode("utf-8")  # a lone surrogate cannot be printed or drawn
    except UnicodeEncodeError:
        return False
    return True


def _metrics(v: Any) -> bool:  # {task: {metric: number}}
    return isinstance(v, Mapping) and all(
        isinstance(m, Mapping) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in m.values())
        for m in v.values())


#: A trial's user attributes that mtnas writes and reads: what each must be.
TRIAL_ATTRS: dict[str, Check] = {
    "delta_m": (_finite, "a finite number"),
    "flops": (_count, "a whole number >= 0"),
    "params": (_count, "a whole number >= 0"),
    "tree": (_text, "a text"),
    "tree_key": (_text, "a text"),
    "partitions": (lambda v: isinstance(v, list), "a list of partitions"),
    "fixed_tree": (_text, "a text"),
    "reused_from": (_count, "a trial number"),
    "retry_of": (_count, "a trial number"),
    "pid": (_count, "a process id"),
    "host": (_text, "a text"),
    "fail_reason": (_text, "a text"),
    "balancing": (_text, "a text"),
    "artifacts": (lambda v: isinstance(v, Mapping) and all(_text(k) and _text(i) for k, i in v.items()),
                  "a mapping of file names to artifact ids"),
    "val": (_metrics, "metrics by task"),
    "test": (_metrics, "metrics by task"),
    "curve": (lambda v: isinstance(v, list) and all(_finite(x) or x is None for x in v), "a list of numbers"),
}
#: What a completed trial must carry (readers index these).
COMPLETE_ATTRS = ("delta_m", "flops", "params", "tree", "tree_key", "partitions")


def check_settings(study: optuna.Study) -> dict[str, Any]:
    """The study's ``mtnas`` settings (``{}`` for a study of another tool), checked."""
    settings = study.user_attrs.get("mtnas")
    where = f"study {short_text(study.study_name)!r}"
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise _damaged(f"{where}: its mtnas settings are {short_repr(settings, 40)}, expected a mapping")
    space = settings.get("space")
    if space is not None and not (isinstance(space, Mapping) and isinstance(space.get("tasks"), list)):
        raise _damaged(f"{where}: its stored space is {short_repr(space, 40)}, expected a search space with tasks")
    for key, check, what in (("objectives", lambda v: isinstance(v, list) and all(_text(o) for o in v), "a list of names"),
                             ("artifacts", _text, "a store URL"), ("strategy", _text, "a strategy name"),
                             ("trials", _count, "a whole number"), ("seed", _count, "a whole number")):
        if key in settings and not check(settings[key]):
            raise _damaged(f"{where}: its setting {key} is {short_repr(settings[key], 40)}, expected {what}")
    return dict(settings)


def check_trial(study_name: str, trial: optuna.trial.FrozenTrial) -> None:
    """Refuse a trial whose attributes are not of the kinds mtnas writes (see :data:`TRIAL_ATTRS`)."""
    where = f"study {short_text(study_name)!r} trial {trial.number}"
    attrs = trial.user_attrs
    for key, (ok, expected) in TRIAL_ATTRS.items():
        if key in attrs and not ok(attrs[key]):
            raise _damaged(f"{where}: {key} is {short_repr(attrs[key], 40)}, expected {expected}")
    if trial.state == optuna.trial.TrialState.COMPLETE:
        missing = [k for k in COMPLETE_ATTRS if k not in attrs]
        if missing:
            raise _damaged(f"{where}: a completed trial without {', '.join(missing)}")
        if not trial.values or not all(_finite(v) for v in trial.values):
            raise _damaged(f"{where}: objective values {short_repr(trial.values, 40)}, expected finite numbers")


def check_study(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Check the study's settings, its recorded fail reasons and every trial; return the trials."""
    check_settings(study)
    for key, value in study.user_attrs.items():
        if key.startswith("fail_reason:") and not _text(value):
            raise _damaged(f"study {short_text(study.study_name)!r}: {short_text(key)} is {short_repr(value, 40)}, "
                           "expected a text")
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        check_trial(study.study_name, trial)
    return trials


def _damaged(text: str) -> MtnasError:
    return MtnasError(f"{text}; the study's storage was damaged or edited: restore it, or correct that value")
