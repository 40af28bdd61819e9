"""``budget``: candidate trees trained in rungs within a budget, the survivors continued.

A user can afford some number of trainings; ``search.budget`` says how many, in trainings of the
all-shared tree at the search budget (``SearchSpace.proxy_epochs`` epochs). Every unit of evidence
the search obtains is charged to that budget by the evidence's ledger (``Evidence.spent``: each
chain of a tree, epochs and seed at the furthest stop it reached, times the tree's cost relative to
all-shared), and no training starts that the budget cannot pay.

Candidates come from **proposers** into one pool, each tagged with its kind: first the
all-shared tree, whose network after the first rung gives the signals (its gradient agreement),
then the proposers ``search.proposers`` names, in order (``mtnas.search._proposers``: the pair
model's groupings, the best grouping at the other layers and as two-level trees, the agreement's
groupings at every layer, TAG's on request). Each candidate is a trial of an Optuna study
(``mtnas.search._candidate_trials``): a study of its own, or the run's with ``--strategy pool``.

Candidates train in **rungs** (successive halving, Jamieson and Talwalkar 2016; Li et al.'s
Hyperband 2018): every candidate for the first third of its schedule (``RUNGS``), the better half
of them (at least two) on to two thirds, the best two of those to the end. Each candidate's
trial reports its score at each rung (step = epochs); the rule is the pruner (``RungPruner``,
``mtnas.search._rung_pruner``), and ``BudgetedSearch(pruner=...)`` takes any other in its place. A survivor resumes its
own training (its checkpoint: weights, optimizer, RNG and epoch), so the winner's last rung is
its training at the search budget. Candidates of one rung are compared on their validation
metrics at the same epoch, each task against the best value any candidate reached on it, less the
trade-off's cost penalty (``mtnas.space.trade_off_score``). Why a third and a half: the tree best
at the end ranks in the better half after a third of its training, and anywhere earlier; reading
the early curve otherwise (leaving out the tasks still rising, or extrapolating each curve) ranked
worse (``python -m benchmarks.rungs``; the figures are in ``benchmarks/README.md``).

The **choice** is the best candidate at the end. When the runner-up is within the noise of the
difference (the spread of the per-task differences between the two, over the square root of
the number of tasks) and the budget allows, both are trained with a second seed and the better
mean wins: another seed only where the decision depends on it. Where the budget does not allow
it, the cheaper of the two wins (the one-SE rule of the default search).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import optuna
import torch

from mtnas.data import DatasetBundle
from mtnas.search._candidate_pool import RUNGS, Candidate, CandidatePool, rung_epochs
from mtnas.search._candidate_trials import CandidateTrials, InStudy
from mtnas.search._proposers import PROPOSERS, Proposal, check_proposers
from mtnas.search._result import SearchResult
from mtnas.search._rung_pruner import RungPruner
from mtnas.search._scores import references, task_terms
from mtnas.search._trained import AGAIN_SEED, _limits
from mtnas.space import SearchConfig, SearchSpace, trade_off_score
from mtnas.train import AnsweringStore, Evidence, EvidenceStore, Trained, Unit
from mtnas.tree import BranchingTree

__all__ = ["RUNGS", "BudgetedSearch", "rung_epochs"]

class BudgetedSearch:
    """Candidates from proposers, trained in rungs within ``search.budget`` (module docstring)."""

    kind = "trained"
    uses = ("gain_per_cost",)
    units_only = True

    def __init__(self, pruner: Callable[[], optuna.pruners.BasePruner] = RungPruner) -> None:
        self.pruner = pruner

    def search(self, space: SearchSpace, bundle: DatasetBundle | None, *, seed: int, hparams: SearchConfig,
               device: torch.device, branches: int | Sequence[int] | None = None, progress: bool = False,
               eval_seed: int | None = None, store: EvidenceStore | AnsweringStore | None = None,
               in_study: InStudy | None = None) -> SearchResult:
        """One budgeted search; ``in_study``: the study its candidates are trials of (default: an
        in-memory study of its own; ``mtnas search --strategy pool`` passes the run's)."""
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))  # no line per candidate study or trial
        try:
            return self._search(space, bundle, seed=seed, hparams=hparams, device=device, branches=branches,
                                progress=progress, eval_seed=eval_seed, store=store, in_study=in_study)
        finally:
            optuna.logging.set_verbosity(verbosity)

    def _search(self, space: SearchSpace, bundle: DatasetBundle | None, *, seed: int, hparams: SearchConfig,
                device: torch.device, branches: int | Sequence[int] | None, progress: bool,
                eval_seed: int | None, store: EvidenceStore | AnsweringStore | None,
                in_study: InStudy | None) -> SearchResult:
        start = time.perf_counter()
        space = replace(space, search=hparams)
        evidence = Evidence(space, bundle, device=device, store=store, progress=progress)
        where = in_study or InStudy(None)
        pool = CandidatePool(space, evidence, seed if eval_seed is None else eval_seed, hparams.budget, hparams.gain_per_cost,
                     lambda rungs: CandidateTrials(where.study, self.pruner(), rungs, finish=where.finish,
                                                   on_open=where.on_open), progress)
        first_stop = pool.rungs[0]
        tasks, layers = space.task_names, space.num_layers
        (shared,) = pool.add([BranchingTree.all_shared(tasks, layers)], "all-shared")
        notes: list[str] = []
        if not pool.advance([shared], first_stop):
            raise ValueError(f"search.budget {hparams.budget:g} does not pay for the all-shared tree's first rung "
                             f"({first_stop} of {pool.epochs} epochs): raise it")
        branchable, limit = _limits(space, branches)
        if branchable:
            proposal = Proposal(pool, shared, branchable, limit, notes)
            for name in check_proposers(hparams):
                PROPOSERS.get(name)(proposal)
        winner = _halve(pool)
        chosen, second = _settle(pool, winner)
        if chosen.record.trial is not None:
            chosen.record.trial.set_user_attr("chosen", True)  # the search's answer among the trials
        pool.close()
        pool.bar.close()
        if pool.skipped:
            notes.append(f"the budget left steps out: {len(pool.skipped)} that {hparams.budget:g} trainings did not pay "
                         "for, e.g. " + "; ".join(pool.skipped[:3]) + ("; ..." if len(pool.skipped) > 3 else ""))
        return SearchResult(tree=chosen.tree, derived=None, routing={},
                            weights=evidence.weights(chosen.results[chosen.stop].unit),
                            seconds=time.perf_counter() - start, hparams=hparams, candidates=_history(pool, second),
                            spent=evidence.spent / pool.epochs, notes=tuple(notes),
                            candidate_trials=pool.trials.trials())


def _halve(pool: CandidatePool) -> Candidate:
    """Successive halving over the rungs: the candidates the pruner lets go on (by default the better
    half of each rung, at least two; ``RungPruner``), as many as the budget pays, go on; the best at
    the last rung reached wins."""
    alive = pool.at(pool.rungs[0])
    for prev, stop in zip(pool.rungs, pool.rungs[1:]):
        scores = pool.scores(alive, prev)
        ranked = pool.go_on(sorted(alive, key=lambda c: -scores[c.tree.key]), scores, prev)
        went = pool.advance(ranked[:1], stop)  # the leader first; the others keep what it needs to finish
        if not went:  # nothing more is affordable: the best so far is the answer, trained as far as it got
            break
        finish = (pool.epochs - stop) * pool.evidence.cost(ranked[0].tree)
        alive = went + pool.advance(ranked[1:], stop, reserve=finish)
    last = max(c.stop for c in alive)
    scores = pool.scores([c for c in alive if c.stop == last], last)
    winner = max((c for c in alive if c.stop == last), key=lambda c: scores[c.tree.key])
    if winner.stop < pool.epochs:  # finish the winner's training if the reserve allows; it is the answer anyway
        pool.advance([winner], pool.epochs)
    return winner


def _settle(pool: CandidatePool, winner: Candidate) -> tuple[Candidate, dict[str, float]]:
    """The runner-up at the end within noise of the winner gets a second seed (and the winner one),
    where the budget pays; the better mean over the two seeds is the answer. Returns the answer and
    the two-seed mean scores (empty when no tie was settled)."""
    end = pool.epochs
    finals = [c for c in pool.at(end)]
    if len(finals) < 2 or end not in winner.results:
        return winner, {}
    scores = pool.scores(finals, end)
    runner = max((c for c in finals if c is not winner), key=lambda c: scores[c.tree.key])
    gap = scores[winner.tree.key] - scores[runner.tree.key]
    if gap > _noise(pool, winner, runner, end):
        return winner, {}
    again = [Unit(c.tree, end, pool.seed + AGAIN_SEED) for c in (winner, runner)]
    cost = sum(end * pool.evidence.cost(c.tree) for c in (winner, runner))
    if cost > pool.left() + 1e-9:  # no second seeds: of two trees within noise, the cheaper (the one-SE rule)
        pool.skipped.append(f"second seeds of a tie within noise ({gap:.2f} points)")
        return (winner if pool.evidence.cost(winner.tree) <= pool.evidence.cost(runner.tree) else runner), {}
    seconds = dict(zip((winner.tree.key, runner.tree.key), pool.evidence.obtain(again)))
    refs = references([c.results[end].result.val for c in finals] + [f.result.val for f in seconds.values()],
                      pool.space)

    def term(found: Trained) -> float:
        return float(np.mean(list(task_terms(found.result.val, refs, pool.space).values())))

    means = {c.tree.key: trade_off_score((term(c.results[end]) + term(seconds[c.tree.key])) / 2,
                                         pool.evidence.cost(c.tree), pool.gain) for c in (winner, runner)}
    return (winner if means[winner.tree.key] >= means[runner.tree.key] else runner), means


def _noise(pool: CandidatePool, a: Candidate, b: Candidate, stop: int) -> float:
    """The noise of the difference of two candidates' mean terms: the spread of their per-task
    differences over the square root of the number of tasks (a paired comparison across tasks)."""
    refs = references([a.results[stop].result.val, b.results[stop].result.val], pool.space)
    ta, tb = (task_terms(c.results[stop].result.val, refs, pool.space) for c in (a, b))
    d = np.array([ta[t] - tb[t] for t in pool.space.task_names])
    return float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


def _history(pool: CandidatePool, second: dict[str, float]) -> dict[str, np.ndarray]:
    """Every candidate at the furthest rung it reached, for ``candidates.json``: its description,
    epochs, mean task term and score against the other candidates of that rung, cost, proposer;
    and, repeated per row, the units and their cost in epochs of the all-shared tree."""
    rows = []
    for stop in pool.rungs:
        here = [c for c in pool.candidates.values() if c.stop == stop]
        if not here:
            continue
        everyone = pool.at(stop)
        scores = pool.scores(everyone, stop)
        refs = references([c.results[stop].result.val for c in everyone], pool.space)
        for c in here:
            term = float(np.mean(list(task_terms(c.results[stop].result.val, refs, pool.space).values())))
            rows.append((c, stop, term, second.get(c.tree.key, scores[c.tree.key])))
    units = pool.evidence.order
    column: Callable[[list], np.ndarray] = np.array
    return {
        "trees": column([c.tree.describe() for c, *_ in rows]),
        "epochs": column([stop for _, stop, _, _ in rows]),
        "delta_m": column([term for _, _, term, _ in rows]),
        "cost": column([pool.evidence.cost(c.tree) for c, *_ in rows]),
        "score": column([score for *_, score in rows]),
        "kind": column([c.kind for c, *_ in rows]),
        "units": np.full(len(rows), len(units)),
        "unit_cost": np.full(len(rows), pool.evidence.spent),
    }
