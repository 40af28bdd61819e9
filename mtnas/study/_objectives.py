"""The study's objectives, by name: what each trial's tree is scored on and in which direction.

A study stores its objective names (``Study.metric_names``, shown by optuna-dashboard, and the
``mtnas`` user attribute); every reader looks values up by name, never by position, so
``--objectives flops,delta_m`` and ``delta_m,flops`` give the same front, picks and plots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from mtnas.core import MtnasError, Registry, did_you_mean

__all__ = ["OBJECTIVES", "QUALITY", "Objective", "cost_objective", "objective_names", "parse_objectives",
           "trial_objectives"]

#: The quality objective every study has: delta-m (%) on the validation split.
QUALITY = "delta_m"


@dataclass(frozen=True)
class Objective:
    """An objective: its direction, and its value from a trial's attributes (``delta_m``, ``flops``, ...)."""

    direction: str  # "maximize" or "minimize"
    value: Callable[[Mapping[str, Any]], float]
    is_cost: bool
    description: str


OBJECTIVES: Registry[Objective] = Registry("objective")
OBJECTIVES.add(QUALITY, Objective("maximize", lambda a: float(a["delta_m"]), False, "delta-m % on val (higher is better)"))
OBJECTIVES.add("flops", Objective("minimize", lambda a: float(a["flops"]), True, "forward FLOPs per sample"))
OBJECTIVES.add("params", Objective("minimize", lambda a: float(a["params"]), True, "parameters"))


def parse_objectives(text: str | Sequence[str]) -> list[str]:
    """``"delta_m,flops"`` -> ``["delta_m", "flops"]``, each a known objective, delta-m among them."""
    names = [o.strip() for o in text.split(",")] if isinstance(text, str) else [str(o).strip() for o in text]
    names = [o for o in names if o]
    if not names:
        raise MtnasError(f"--objectives: give at least one of {', '.join(OBJECTIVES.names())}, e.g. delta_m,flops")
    for o in names:
        if o not in OBJECTIVES:
            raise MtnasError(f"unknown objective {o!r}{did_you_mean(o, OBJECTIVES.names())}; "
                             f"valid: {', '.join(OBJECTIVES.names())}")
    if len(set(names)) != len(names):
        raise MtnasError(f"--objectives: {','.join(names)} names an objective twice")
    if QUALITY not in names:
        raise MtnasError(f"--objectives: {QUALITY} must be one of them (the quality the front trades against cost)")
    return names


def objective_names(study: optuna.Study) -> list[str]:
    """The study's objective names, in its values' order."""
    settings = study.user_attrs.get("mtnas") or {}
    names = settings.get("objectives") or study.metric_names
    if not names or len(names) != len(study.directions):
        raise MtnasError(f"study {study.study_name!r} does not name its objectives; was it made by 'mtnas search'?")
    return list(names)


def trial_objectives(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    """``{objective name: value}`` of a completed trial."""
    return dict(zip(objective_names(study), trial.values or ()))


def cost_objective(names: Sequence[str]) -> str | None:
    """The first cost objective among ``names`` (None when the study optimises quality alone)."""
    return next((n for n in names if OBJECTIVES.get(n).is_cost), None)
