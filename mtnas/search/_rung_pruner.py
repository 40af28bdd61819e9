"""The budgeted search's rung rule as an Optuna pruner, so that another pruner can take its place.

Each candidate tree of a budgeted search (``mtnas.search._budgeted``) is a trial of a study of
candidates: at each rung it reports its trade-off score with the rung's epochs as the step, and the
study's pruner says whether it goes on. ``RungPruner`` is the rule measured for the default
(``python -m benchmarks.rungs``): every candidate reports at a rung before any is judged, and a
candidate goes on when fewer than ``keep`` of the candidates that reported at that step did better,
``keep`` being the better half (at least ``min_survivors``), or only ``min_survivors`` at the rung
before the end. The rungs are the study's user attribute ``rungs`` (their epochs, in order).

Any ``optuna.pruners.BasePruner`` can replace it: register the method again with another one,
``METHODS.add("budget-median", BudgetedSearch(pruner=lambda: optuna.pruners.MedianPruner()))``.
A pruner that prunes nothing leaves the budget alone to decide how far each candidate goes.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["RUNGS_ATTR", "RungPruner"]

#: The study's user attribute that holds the rungs' epochs, in order.
RUNGS_ATTR = "rungs"


class RungPruner(optuna.pruners.BasePruner):
    """Successive halving over the study's rungs, judged once every candidate of a rung reported.

    Args:
        keep: the share of a rung's candidates that go on to the next.
        min_survivors: at least this many go on; only this many go on to the end.
    """

    def __init__(self, keep: float = 0.5, min_survivors: int = 2) -> None:
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"RungPruner: keep must be in (0, 1], got {keep!r}")
        if min_survivors < 1:
            raise ValueError(f"RungPruner: min_survivors must be >= 1, got {min_survivors!r}")
        self.keep, self.min_survivors = keep, min_survivors

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        rungs = list(study.user_attrs.get(RUNGS_ATTR, ()))
        if step is None or step not in rungs or step == rungs[-1]:
            return False  # not at a rung, or at the end: nothing is left to decide
        final = rungs[rungs.index(step) + 1] == rungs[-1]
        peers = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False)
                 if t.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
                 and step in t.intermediate_values]
        keep = self.min_survivors if final else max(self.min_survivors, math.ceil(self.keep * len(peers)))
        value = trial.intermediate_values[step]
        return sum(v > value for v in peers) >= keep
