"""The Pareto front of a study, and picking one tree from it.

Trials are read by objective name (see ``mtnas.study._objectives``). A front point is (quality,
cost): quality is delta-m, cost the study's cost objective (FLOPs or params; a quality-only
study uses each trial's FLOPs).

Two fronts: the study's (:func:`pareto`: every completed trial, the enqueued all-shared and
independent references among them, marked by their ``fixed_tree``) and the searched one
(:func:`searched_front`: the trials whose tree a strategy chose). The picks choose from the
searched front, since the references are there to compare with (the independent tree is often
the best delta-m, the all-shared tree always the cheapest); a reference is still exported by its
trial number (``--trial``).

How ``trade-off`` (the default) chooses: the searched tree of highest delta-m less
``search.gain_per_cost`` points for each all-shared network's worth of extra cost, the trade-off
the default search itself makes, so the tree exported is the one a search of the space's
defaults would return among those the study found.

How ``knee`` chooses: both coordinates are scaled to [0, 1] over the front (quality up is good,
cost down is good); the knee is the trial farthest above the straight line from the cheapest
trial to the best-quality one, i.e. the one that buys the most quality per unit of cost relative
to that trade-off. With fewer than three trials on the front it is the quality pick.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from mtnas.core import MtnasError, Registry, atomic_write_text
from mtnas.space import trade_off_score
from mtnas.study._objectives import QUALITY, cost_objective, objective_names, trial_objectives
from mtnas.study._run import SearchRun, load_study, trial_label, trial_tree
from mtnas.tree import BranchingTree

__all__ = ["PICKS", "FrontPoints", "FrontTree", "choose_trial", "front_point", "front_points", "front_trees", "knee",
           "pareto", "searched_front", "trade_off",
           "write_pareto"]

Trial = optuna.trial.FrozenTrial


def front_point(study: optuna.Study, trial: Trial) -> tuple[float, float]:
    """(quality, cost) of a completed trial, by objective name."""
    values = trial_objectives(study, trial)
    cost = cost_objective(list(values))
    return values[QUALITY], values[cost] if cost is not None else float(trial.user_attrs.get("flops", 0.0))


def _one_per_tree(study: optuna.Study, trials: Sequence[Trial]) -> list[Trial]:
    best, seen = [], set()
    for t in sorted(trials, key=lambda t: (-front_point(study, t)[0], t.number)):
        key = t.user_attrs.get("tree_key")
        if key not in seen:
            seen.add(key)
            best.append(t)
    return best


def pareto(study: optuna.Study) -> list[Trial]:
    """The Pareto-best trials of the study, references included, one per distinct tree, best delta-m first."""
    return _one_per_tree(study, study.best_trials)


def _dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[optuna.study.StudyDirection]) -> bool:
    better = [x > y if d == optuna.study.StudyDirection.MAXIMIZE else x < y for x, y, d in zip(a, b, directions)]
    worse = [x < y if d == optuna.study.StudyDirection.MAXIMIZE else x > y for x, y, d in zip(a, b, directions)]
    return any(better) and not any(worse)


def searched_front(study: optuna.Study) -> list[Trial]:
    """The Pareto-best of the searched trials (the enqueued references left out), one per distinct
    tree, best delta-m first; empty while no searched trial has completed."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if not t.user_attrs.get("fixed_tree") and t.values is not None]
    front = [t for t in done if not any(_dominates(o.values, t.values, study.directions) for o in done)]
    return _one_per_tree(study, front)


@dataclass(frozen=True)
class FrontTree:
    """One tree of a study's Pareto front.

    Attributes:
        trial: its trial number (``runs/NAME/trials/NNNN/arch.json`` holds it with its space).
        tree: the branching tree.
        objectives: the trial's objective values by name (``{"delta_m": ..., "flops": ...}``).
        delta_m, flops, params: its proxy delta-m (%, val) and cost.
        reference: ``"all-shared"`` or ``"independent"`` for an enqueued reference tree, else None.
    """

    trial: int
    tree: BranchingTree
    objectives: dict[str, float]
    delta_m: float
    flops: int
    params: int
    reference: str | None = None


def front_trees(study_or_run: optuna.Study | SearchRun | str | Path, *, references: bool = False) -> list[FrontTree]:
    """The Pareto front of the searched trees of a study (or of a run folder) as objects, best
    delta-m first; with ``references`` the study's whole front, the enqueued all-shared and
    independent trees among them (marked by ``reference``)."""
    study = study_or_run
    if not isinstance(study, optuna.Study):
        study = load_study(study if isinstance(study, SearchRun) else SearchRun(Path(study)))
    trials = pareto(study) if references else searched_front(study)
    return [FrontTree(t.number, trial_tree(study, t), trial_objectives(study, t), float(t.user_attrs["delta_m"]),
                      int(t.user_attrs["flops"]), int(t.user_attrs["params"]), t.user_attrs.get("fixed_tree"))
            for t in trials]


def knee(points: Sequence[tuple[float, float]]) -> int:
    """Index of the knee of a front of (quality, cost) points: higher quality and lower cost are better.

    Both coordinates are scaled to [0, 1]; the knee is the point with the largest distance above
    the line from the cheapest point to the best-quality one (the "kneedle" rule).
    """
    if not points:
        raise ValueError("knee() of an empty front")
    best = _quality(points)
    if len(points) < 3:
        return best
    qs, cs = [p[0] for p in points], [p[1] for p in points]
    q_span, c_span = (max(qs) - min(qs)) or 1.0, (max(cs) - min(cs)) or 1.0
    scaled = [((q - min(qs)) / q_span, (c - min(cs)) / c_span) for q, c in points]
    cheap = _cheapest(points)
    (q0, c0), (q1, c1) = scaled[cheap], scaled[best]

    def above(i: int) -> float:  # signed distance (times a constant) above the cheap -> best line
        q, c = scaled[i]
        return (c1 - c0) * (q - q0) - (q1 - q0) * (c - c0)

    return max(range(len(points)), key=lambda i: (above(i), points[i][0]))


def _quality(points: Sequence[tuple[float, float]]) -> int:
    return max(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))


def _cheapest(points: Sequence[tuple[float, float]]) -> int:
    return min(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))


@dataclass(frozen=True)
class FrontPoints:
    """What a pick chooses from: the (quality, cost) points of the searched front, the all-shared
    reference's cost (None when the study has none), and the space's ``search.gain_per_cost``."""

    points: Sequence[tuple[float, float]]
    all_shared_cost: float | None
    gain_per_cost: float


def trade_off(front: FrontPoints) -> int:
    """The point of highest ``delta-m - gain_per_cost * (cost / all-shared cost - 1)``: the trade-off
    the default search makes (``mtnas.search``); the knee when the all-shared cost is unknown."""
    if not front.all_shared_cost:
        return knee(front.points)
    unit = front.all_shared_cost  # the points' costs are their trees' (tree_cost), so this is relative_cost
    return max(range(len(front.points)),
               key=lambda i: (trade_off_score(front.points[i][0], front.points[i][1] / unit, front.gain_per_cost),
                              -front.points[i][1]))


#: ``--pick``: which point of the searched front to take.
PICKS: Registry[Callable[[FrontPoints], int]] = Registry("pick")
PICKS.add("trade-off", trade_off)
PICKS.add("knee", lambda front: knee(front.points))
PICKS.add("quality", lambda front: _quality(front.points))
PICKS.add("cheapest", lambda front: _cheapest(front.points))


def choose_trial(study: optuna.Study, number: int | None = None, pick: str = "trade-off") -> Trial:
    """Completed trial ``number`` (a reference too), or the trial ``pick`` chooses from the searched front."""
    chooser = PICKS.get(pick)
    if number is not None:
        done = {t.number: t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
        if number not in done:
            valid = ", ".join(str(n) for n in sorted(done)) or "none"
            raise MtnasError(f"trial {number} is not a completed trial of this run; completed: {valid}")
        return done[number]
    front = searched_front(study)
    if not front:
        references = {t.user_attrs["fixed_tree"]: t.number for t in study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.user_attrs.get("fixed_tree")}
        held = "; ".join(f"{name}: --trial {n}" for name, n in sorted(references.items(), key=lambda kv: kv[1]))
        raise MtnasError("the run has no completed searched trial yet"
                         + (f" (only the references, {held})" if held else "")
                         + "; continue it with 'mtnas search --resume --name NAME --trials N'")
    return front[chooser(front_points(study, front))]


def front_points(study: optuna.Study, front: Sequence[Trial]) -> FrontPoints:
    """The picks' view of ``front``: its points, the all-shared reference's cost and the study's
    ``search.gain_per_cost`` (its space's, else the default)."""
    shared = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if t.user_attrs.get("fixed_tree") == "all-shared"]
    settings = study.user_attrs.get("mtnas") or {}
    search = ((settings.get("space") or {}).get("search") or {}) if isinstance(settings, dict) else {}
    gain = search.get("gain_per_cost") if isinstance(search, dict) else None
    if not isinstance(gain, (int, float)) or isinstance(gain, bool) or not math.isfinite(gain) or gain < 0:
        from mtnas.space import SearchConfig  # here: the space schema loads torch, and show/trials do not

        gain = SearchConfig().gain_per_cost
    return FrontPoints([front_point(study, t) for t in front], front_point(study, shared[0])[1] if shared else None,
                       float(gain))


def write_pareto(run: SearchRun, study: optuna.Study) -> list[dict[str, Any]]:
    """``pareto.json``: each trial of the study's front with its tree and its objectives by name
    (``reference``: ``all-shared`` or ``independent`` for an enqueued reference tree, else null)."""
    names = objective_names(study)
    front = [
        {"trial": t.number, "reference": t.user_attrs.get("fixed_tree"), "tree_key": t.user_attrs.get("tree_key"),
         "tree": trial_label(study, t),
         "objectives": dict(zip(names, t.values)), "delta_m": t.user_attrs.get("delta_m"),
         "flops": t.user_attrs.get("flops"), "params": t.user_attrs.get("params")}
        for t in pareto(study)
    ]
    atomic_write_text(run.root / "pareto.json", json.dumps(front, indent=1))
    return front
