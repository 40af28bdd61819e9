"""The candidates of a budgeted search as the trials of an Optuna study.

Each candidate tree is one trial: asked when a proposer puts it in the pool, with the tree and the
proposer's kind as user attributes, its score at each rung as an intermediate value (step =
epochs), judged after each rung by the study's pruner, and ended complete once trained to the end
or pruned (``stopped_by``: ``pruner``, the rung rule, or ``budget``). optuna-dashboard draws every
candidate's curve.

The study is by default an in-memory one of this search alone; ``mtnas search --strategy pool``
hands the run's own study, so the candidates are that study's trials, with its objectives at the
end (``finish``). Optuna's ``Trial.report`` and ``should_prune`` refuse a study of several
objectives, so the scores are written to the storage as intermediate values and the pruner is asked
directly (``pruner.prune(study, trial)``), the same calls for one objective or several.

A candidate the study ended already (a resumed search replays its decisions from the evidence)
keeps that record: it is neither asked again nor reported twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtnas.search._rung_pruner import RUNGS_ATTR
from mtnas.tree import BranchingTree

__all__ = ["CANDIDATE_ATTR", "CandidateTrials", "Finish", "InStudy", "Record"]

#: The user attribute that marks a trial as a budgeted search's candidate (its proposer's kind).
CANDIDATE_ATTR = "kind"

#: The objective values of a candidate trained to the end: (its live trial, the trained result, its
#: trade-off score among the candidates at the end). None: the score itself (one objective).
Finish = Callable[[optuna.Trial, object, float], Sequence[float]]


#: What ``pruned_reason`` says of a candidate stopped by the rung rule or by the budget.
_WHY = {"pruner": "stopped by the rung rule", "budget": "stopped by the budget"}


@dataclass(frozen=True)
class InStudy:
    """The study a budgeted search's candidates are trials of (None: an in-memory one of its own),
    the objective values of a candidate trained to the end (None: its score), and what is done
    with each new live trial (e.g. record the process that runs it)."""

    study: optuna.Study | None
    finish: Finish | None = None
    on_open: Callable[[optuna.Trial], None] | None = None


@dataclass
class Record:
    """A candidate's trial: ``trial`` while it runs here, None once it ended (here or in an earlier run)."""

    number: int
    trial: optuna.Trial | None


class CandidateTrials:
    """Candidates as trials of ``study`` (see the module docstring).

    Args:
        study: where the candidates' trials go; a new in-memory study when None.
        pruner: the rung rule (any ``optuna.pruners.BasePruner``).
        rungs: the epochs where candidates report, in order (the study's ``rungs`` attribute).
        finish: the objective values of a candidate trained to the end (default: its score).
        on_open: called with each new live trial (e.g. to record the process that runs it).
    """

    def __init__(self, study: optuna.Study | None, pruner: optuna.pruners.BasePruner, rungs: Sequence[int], *,
                 finish: Finish | None = None, on_open: Callable[[optuna.Trial], None] | None = None) -> None:
        self.study = study if study is not None else optuna.create_study(direction="maximize")
        self.pruner, self.finish, self.on_open = pruner, finish, on_open
        self.study.set_user_attr(RUNGS_ATTR, list(rungs))
        self._numbers: list[int] = []
        # the candidates an earlier run of this search ended (read once: only this process records)
        self._ended = {t.user_attrs.get("tree_key"): t.number
                       for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                       if CANDIDATE_ATTR in t.user_attrs}

    def open(self, tree: BranchingTree, kind: str) -> Record:
        """The trial of a new candidate: the one the study ended already for ``tree``, else a new one."""
        if tree.key in self._ended:
            self._numbers.append(self._ended[tree.key])
            return Record(self._ended[tree.key], None)
        # a new trial, never an enqueued one (``ask`` would take the study's waiting references)
        trial = optuna.Trial(self.study, self.study._storage.create_new_trial(self.study._study_id))
        if self.on_open is not None:
            self.on_open(trial)
        for key, value in (("tree", tree.describe()), ("tree_key", tree.key),
                           ("partitions", tree.to_dict()["partitions"]), (CANDIDATE_ATTR, kind)):
            trial.set_user_attr(key, value)
        self._numbers.append(trial.number)
        return Record(trial.number, trial)

    def report(self, record: Record, score: float, step: int) -> None:
        if record.trial is not None:
            self.study._storage.set_trial_intermediate_value(record.trial._trial_id, step, score)

    def goes_on(self, record: Record, step: int) -> bool:
        """Whether the pruner lets the candidate go on after its report at ``step``; for one the study
        ended already, what was decided then (pruned by the pruner at ``step``, or not)."""
        if record.trial is None:
            ended = self.study._storage.get_trial(self._id(record))
            return not (ended.user_attrs.get("stopped_by") == "pruner" and ended.last_step == step)
        return not self.pruner.prune(self.study, self.study._storage.get_trial(record.trial._trial_id))

    def _id(self, record: Record) -> int:
        return self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, record.number)

    def prune(self, record: Record, by: str) -> None:
        """The candidate stops here: its trial ends pruned, ``stopped_by`` saying which stopped it."""
        if record.trial is not None:
            record.trial.set_user_attr("stopped_by", by)
            last = self.study._storage.get_trial(record.trial._trial_id).last_step
            record.trial.set_user_attr("pruned_reason", _WHY[by] if last is None else f"{_WHY[by]} after epoch {last}")
            self.study.tell(record.trial, state=TrialState.PRUNED)
            record.trial = None

    def complete(self, record: Record, score: float, found: object, step: int) -> None:
        """The candidate reached the end: its last score reported, its trial complete with its objectives."""
        if record.trial is not None:
            self.report(record, score, step)
            values = (score,) if self.finish is None else tuple(self.finish(record.trial, found, score))
            self.study.tell(record.trial, values)
            record.trial = None

    def trials(self) -> tuple[FrozenTrial, ...]:
        """The trials of this search's candidates, in the order they were proposed."""
        return tuple(self.study._storage.get_trial(self._id(Record(n, None))) for n in self._numbers)
