"""One trial of a run in detail (``mtnas show RUN --trial N``), read from the study alone.

What the trial evaluated (its tree, whether it is an enqueued reference or reused another trial's
result), what it scored (delta-m, cost, each task's validation and test metrics of its proxy
training), how it got there (the hyperparameters it sampled, the search's time and stopping
epoch), and, when it did not complete, its state and why.
"""

from __future__ import annotations

from typing import Any

import optuna

from mtnas.core import MtnasError, format_table
from mtnas.study._run import fail_reason, trial_tree

__all__ = ["render_trial", "trial_details"]

#: user attributes shown under "search" (the rest are metrics, the tree, or bookkeeping)
_SEARCH_FACTS = ("balancing", "search_seconds")


def _seconds(t: optuna.trial.FrozenTrial) -> float | None:
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return (t.datetime_complete - t.datetime_start).total_seconds()


def trial_details(study: optuna.Study, number: int) -> dict[str, Any]:
    """Everything ``mtnas show --trial`` prints about trial ``number``, as plain data."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        valid = f"0-{max(trials)}" if trials else "none yet"
        raise MtnasError(f"trial {number} is not a trial of this run; its trials: {valid} (see 'mtnas trials')")
    t = trials[number]
    a = t.user_attrs
    tree = trial_tree(study, t) if "partitions" in a else None
    return {
        "trial": t.number,
        "state": t.state.name,
        "reference": a.get("fixed_tree"),
        "reused_from": a.get("reused_from"),
        "retry_of": a.get("retry_of"),
        "sharing": tree.describe() if tree is not None else None,
        "tree": tree.to_dict() if tree is not None else None,
        "text": tree.render_text() if tree is not None else None,
        "delta_m": a.get("delta_m"),
        "flops": a.get("flops"),
        "params": a.get("params"),
        "val": a.get("val"),
        "test": a.get("test"),
        "curve": a.get("curve"),
        "hyperparameters": dict(t.params),
        "search": {k: a[k] for k in _SEARCH_FACTS if k in a},
        "phase": a.get("phase") if t.state == optuna.trial.TrialState.RUNNING else None,
        "seconds": _seconds(t),
        "fail_reason": fail_reason(study, t),
        "pruned_reason": a.get("pruned_reason"),
    }


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def render_trial(d: dict[str, Any]) -> str:
    """The text form of :func:`trial_details`."""
    what = (f"reference tree: {d['reference']}" if d["reference"] else "searched tree")
    if d["reused_from"] is not None:
        what += f"; result reused from trial {d['reused_from']} (the same tree)"
    state = d["state"] + (f", {d['phase']}" if d["phase"] else "")
    lines = [f"trial {d['trial']}: {state} ({what})"]
    if d["fail_reason"] and d["state"] == "FAIL":
        lines.append(f"failed: {d['fail_reason']}")
    if d["pruned_reason"] and d["state"] == "PRUNED":
        lines.append(f"pruned: {d['pruned_reason']}")
    if d["delta_m"] is not None:
        lines.append(f"delta-m {d['delta_m']:+.2f}% (val)  FLOPs {d['flops']:,}  params {d['params']:,}"
                     + (f"  in {d['seconds']:.1f}s" if d["seconds"] is not None else ""))
    if d["text"]:
        lines += ["", d["text"]]
    if d["val"]:
        rows = [[task, metric, value, (d["test"] or {}).get(task, {}).get(metric, "-")]
                for task, metrics in d["val"].items() for metric, value in metrics.items()]
        lines += ["", "per-task metrics after the proxy training:", format_table(["task", "metric", "val", "test"], rows)]
    if d["hyperparameters"]:
        lines += ["", "hyperparameters: " + ", ".join(f"{k} {_value(v)}" for k, v in sorted(d["hyperparameters"].items()))]
    elif d["reference"]:
        lines += ["", "hyperparameters: none (an enqueued reference tree samples nothing)"]
    if d["search"]:
        lines.append("search: " + ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in d["search"].items()))
    return "\n".join(lines)
