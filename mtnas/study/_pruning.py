"""Stopping a trial's proxy training once it is clearly not worth finishing (``search.pruner``).

Each trial's delta-m is recorded after every proxy epoch (its ``curve`` user attribute, against
the single-task baselines of the full proxy budget, so early epochs score low for every tree alike
and trials compare epoch by epoch).

- ``front`` (any study, the multi-objective default's one): successive halving against the
  front. At the rungs 1, 2, 4, ... epochs the trial stops when a completed trial at most as costly
  was better at the same epoch by more than ``FRONT_MARGIN`` points: it is dominated already, and
  more epochs of a tree that starts that far behind rarely close the gap.
- ``median``, ``halving``, ``hyperband``: Optuna's own pruners (``MedianPruner``,
  ``SuccessiveHalvingPruner``, ``HyperbandPruner``) on that curve; Optuna refuses pruning in
  multi-objective studies, so these need ``--objectives delta_m``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from mtnas.core import ConfigError, Registry, did_you_mean
from mtnas.study._front import front_point

__all__ = ["FRONT_MARGIN", "PRUNERS", "PrunerType", "check_pruner", "epoch_monitor"]

#: Delta-m points a cheaper-or-equal completed trial must lead by at the same epoch to prune.
FRONT_MARGIN = 1.0


@dataclass(frozen=True)
class PrunerType:
    """A pruner: Optuna's (built into the study) or None for mtnas's own front rule."""

    optuna: Callable[[], optuna.pruners.BasePruner] | None
    single_objective_only: bool
    description: str


PRUNERS: Registry[PrunerType] = Registry("pruner")
PRUNERS.add("front", PrunerType(None, False, "successive halving against the completed trials' curves"))
PRUNERS.add("median", PrunerType(lambda: optuna.pruners.MedianPruner(n_startup_trials=2), True, "Optuna's median"))
PRUNERS.add("halving", PrunerType(optuna.pruners.SuccessiveHalvingPruner, True, "Optuna's successive halving"))
PRUNERS.add("hyperband", PrunerType(optuna.pruners.HyperbandPruner, True, "Optuna's Hyperband"))


def check_pruner(name: str | None, objectives: list[str]) -> PrunerType | None:
    """The pruner ``search.pruner`` names (None: none); a ConfigError for a name or a study it does not fit."""
    if name is None:
        return None
    if name not in PRUNERS:
        raise ConfigError(f"search.pruner: unknown pruner {name!r}{did_you_mean(name, PRUNERS.names())}; "
                          f"valid: {', '.join(PRUNERS.names())}, or null")
    kind = PRUNERS.get(name)
    if kind.single_objective_only and len(objectives) > 1:
        raise ConfigError(f"search.pruner: {name!r} is one of Optuna's pruners, which refuse multi-objective studies; "
                          "use 'front', or search with --objectives delta_m")
    return kind


def _rung(epoch: int) -> bool:
    return epoch & (epoch - 1) == 0  # 1, 2, 4, 8, ...


def epoch_monitor(trial: optuna.Trial, name: str | None, cost: float,
                  delta_m: Callable[[dict], float]) -> Callable[[int, dict], None] | None:
    """The ``monitor`` of a trial's proxy training: records the curve, raises ``TrialPruned`` to stop."""
    if name is None:
        return None
    kind, curve = PRUNERS.get(name), []

    def monitor(epoch: int, val: dict) -> None:
        curve.append(delta_m(val))
        trial.set_user_attr("curve", list(curve))
        if kind.optuna is not None:
            trial.report(curve[-1], step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}: delta-m {curve[-1]:+.2f}% ({name})")
            return
        if not _rung(epoch):
            return
        study = trial.study
        for done in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            theirs = done.user_attrs.get("curve") or []
            if len(theirs) >= epoch and front_point(study, done)[1] <= cost and theirs[epoch - 1] > curve[-1] + FRONT_MARGIN:
                raise optuna.TrialPruned(f"pruned at epoch {epoch}: delta-m {curve[-1]:+.2f}%, trial {done.number} "
                                         f"was {theirs[epoch - 1]:+.2f}% at no more cost")

    return monitor
