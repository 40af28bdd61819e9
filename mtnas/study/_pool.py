"""``--strategy pool``: the study's trials are the candidate trees of one budgeted search.

Where the trial strategies run a whole search in every trial, this one runs the budgeted search
(``mtnas.search.BudgetedSearch``, ``search.budget`` trainings of the all-shared tree) once, and its
candidates are the study's trials: asked as proposers put them in the pool, their trade-off score
at each rung as intermediate values, judged by the rung rule (an Optuna pruner), complete with the
study's objectives (delta-m against the single-task baselines, FLOPs) and their trial files once
trained to the end, else pruned. So the front, ``mtnas export --pick`` and optuna-dashboard read
the pool itself, every trade-off from one set of trainings.

Every process works on the same search (the search process, each worker of ``--workers N`` or
``mtnas worker`` on a shared storage): each makes the same decisions from the shared evidence and
trains the units it claims, so the candidates' trainings are split among them and none is trained
twice; the first to claim it records the candidates as trials (a process that starts after its
holder is gone takes the claim over). The references (all-shared and independent, enqueued) are
evaluated after the pool as in any study; a candidate's training is reused where it reached the
end. ``--resume`` replays the search from the evidence: candidates the study ended keep their
trials, those a dead process left open are failed and asked again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import optuna

from mtnas.core import Registry
from mtnas.study._liveness import mark_alive, reap_dead_trials
from mtnas.study._objective import FIXED, write_trial_files
from mtnas.study._objectives import OBJECTIVES
from mtnas.study._strategies import TrialContext

if TYPE_CHECKING:
    from mtnas.data import DatasetBundle
    from mtnas.space import SearchSpace
    from mtnas.train import Baselines, Trained

__all__ = ["RECORDER", "STUDY_DRIVERS", "StudyDriver", "run_pool"]

#: The claim (in the study's evidence store) of the process that records the candidates as trials.
RECORDER = "pool:recorder"


def run_pool(study: optuna.Study, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines,
             ctx: TrialContext, trials: Callable[[int], None]) -> None:
    """The study's budgeted search: its candidates recorded as trials by the process that holds the
    study's recorder claim (the first to ask; a later one once its holder is gone), the trainings
    shared by every process that runs it; then, by the recorder, the references
    (``trials(n)``: the study's ordinary trials until it holds ``n`` completed ones)."""
    records = ctx.store.claim(RECORDER) if ctx.store is not None else True
    try:
        if records:
            reap_dead_trials(study, retry=False)  # candidates of a recording process that died: asked again
        _search(study, space, bundle, baselines, ctx, records)
        if records:  # the references, as in every study (a candidate trained to the end is reused)
            complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            waiting = sum(t.user_attrs.get("fixed_tree") in FIXED
                          for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
            trials(complete + waiting)
    finally:
        if records and ctx.store is not None:
            ctx.store.release(RECORDER)


def _search(study: optuna.Study, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines,
            ctx: TrialContext, records: bool) -> None:
    """The budgeted search, its candidates as the study's trials where ``records``."""
    from mtnas.search import METHODS, InStudy  # torch: imported when the search runs

    def finish(trial: optuna.Trial, found: Trained, score: float) -> tuple[float, ...]:
        result = found.result
        attrs = {"val": result.val, "test": result.test, "params": result.cost.params, "flops": result.cost.flops,
                 "delta_m": baselines.delta_m(result, space, "val")}
        trial.set_user_attr("balancing", space.training.balancing)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        write_trial_files(ctx, trial, found.unit.tree, space, attrs)
        return tuple(OBJECTIVES.get(name).value(attrs) for name in ctx.objectives)

    METHODS.get("budget").search(
        space, bundle, seed=ctx.seed, hparams=space.search, device=ctx.device, progress=ctx.progress,
        eval_seed=ctx.seed, store=ctx.store, in_study=InStudy(study, finish, mark_alive) if records else None)


class StudyDriver(Protocol):
    def __call__(self, study: optuna.Study, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines,
                 ctx: TrialContext, trials: Callable[[int], None]) -> None:
        """This process's work on ``study`` (the search process's, or a worker's); ``trials(n)``
        runs the study's ordinary trials (the enqueued references) until it holds ``n`` completed."""


#: The strategies (``--strategy``) that make the study's trials themselves, not one tree per Optuna trial.
STUDY_DRIVERS: Registry[StudyDriver] = Registry("study driver")
STUDY_DRIVERS.add("pool", run_pool)
