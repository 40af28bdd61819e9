"""The pool of a budgeted search: its candidate trees, the rungs they train in, and the budget
they draw on (``mtnas.search._budgeted`` decides; ``mtnas.search._proposers`` fill it).

The rungs are where candidates are compared: a third, two thirds and all of the schedule
(``RUNGS``; why, in ``mtnas.search._budgeted``). A candidate's trainings are units of evidence
(``mtnas.train.Evidence``), charged to the budget by the evidence's ledger; each candidate is a
trial (``mtnas.search._candidate_trials``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mtnas.search._candidate_trials import CandidateTrials, Record
from mtnas.search._scores import references, task_terms
from mtnas.space import SearchSpace, trade_off_score
from mtnas.train import Evidence, Trained, Unit
from mtnas.tree import BranchingTree

__all__ = ["RUNGS", "Candidate", "CandidatePool", "rung_epochs"]

#: The fractions of the schedule where candidates are compared (``benchmarks.rungs``).
RUNGS = (1 / 3, 2 / 3, 1.0)


def rung_epochs(epochs: int, fractions: Sequence[float] | None = None) -> tuple[int, ...]:
    """The epochs of ``RUNGS`` for a schedule of ``epochs`` (distinct, at least 1, the last ``epochs``).
    Where units stop only at some ``fractions`` of it (published trainings), the rungs are those of
    them no earlier than the first of ``RUNGS``: a tree is not judged earlier than measured to be
    safe."""
    if fractions is not None:
        return tuple(sorted({max(1, round(f * epochs)) for f in fractions if f >= RUNGS[0] - 1e-9} | {epochs}))
    return tuple(sorted({max(1, round(f * epochs)) for f in RUNGS} | {epochs}))


@dataclass
class Candidate:
    """A tree in the pool: the proposer that put it there, and its results at each rung reached."""

    tree: BranchingTree
    kind: str
    record: Record  # its trial (mtnas.search._candidate_trials)
    results: dict[int, Trained] = field(default_factory=dict)  # stop (epochs) -> result

    @property
    def stop(self) -> int:
        return max(self.results, default=0)


class CandidatePool:
    """The candidates of one search and the budget they draw on."""

    def __init__(self, space: SearchSpace, evidence: Evidence, seed: int, budget: float, gain: float,
                 trials: Callable[[Sequence[int]], CandidateTrials], progress: bool = False) -> None:
        from tqdm.auto import tqdm

        self.space, self.evidence, self.seed, self.gain = space, evidence, seed, gain
        self.epochs = space.proxy_epochs
        self.rungs = rung_epochs(self.epochs, evidence.fractions)
        # the candidates' trials: one per candidate, its score at each rung; the pruner is the rung rule
        self.trials = trials(self.rungs)
        self.budget = budget * self.epochs  # in epochs of the all-shared tree
        self.candidates: dict[str, Candidate] = {}
        self.skipped: list[str] = []  # what the budget did not pay for, for the notes
        # the budget spent, in trainings of the all-shared tree at the search budget
        self.bar = tqdm(total=budget, desc="budget", unit="training", disable=not progress, leave=False,
                        bar_format="{desc}: {n:.2f}/{total:.2f} trainings |{bar}|{postfix}")

    def left(self) -> float:
        return self.budget - self.evidence.spent

    def step_cost(self, cands: Sequence[Candidate], stop: int) -> float:
        return sum(max(0, stop - c.stop) * self.evidence.cost(c.tree) for c in cands)

    def add(self, trees: Sequence[BranchingTree], kind: str) -> list[Candidate]:
        """The trees not yet in the pool, added as candidates of ``kind``."""
        fresh = []
        for tree in dict.fromkeys(trees):
            if tree.key not in self.candidates:
                self.candidates[tree.key] = Candidate(tree, kind, self.trials.open(tree, kind))
                fresh.append(self.candidates[tree.key])
        return fresh

    def drop(self, c: Candidate) -> None:
        """A candidate whose first rung the budget did not pay: out of the pool, its trial pruned."""
        del self.candidates[c.tree.key]
        self.trials.prune(c.record, "budget")

    def go_on(self, ranked: Sequence[Candidate], scores: dict[str, float], stop: int) -> list[Candidate]:
        """Of ``ranked`` (best first), those the pruner lets go on after each reported its score at
        ``stop``; the others' trials end pruned."""
        for c in ranked:
            self.trials.report(c.record, scores[c.tree.key], stop)
        on = [c for c in ranked if self.trials.goes_on(c.record, stop)]
        for c in ranked:
            if c not in on:
                self.trials.prune(c.record, "pruner")
        return on

    def close(self) -> None:
        """Every trial still open ends: complete with its score where it reached the end, else pruned
        (the budget stopped it). A pruned trial's user attribute ``stopped_by`` says which stopped
        it: ``pruner`` (the rung rule) or ``budget``."""
        finals = self.at(self.epochs)
        scores = self.scores(finals, self.epochs) if finals else {}
        for c in self.candidates.values():
            if c.tree.key in scores:  # its curve ends with its score at the end
                self.trials.complete(c.record, scores[c.tree.key], c.results[self.epochs], self.epochs)
            else:
                self.trials.prune(c.record, "budget")

    def advance(self, cands: Sequence[Candidate], stop: int, reserve: float = 0.0) -> list[Candidate]:
        """Train ``cands`` (in order of preference) on to ``stop`` as far as the budget, less
        ``reserve`` epochs kept for later, pays; returns those that reached it."""
        paid, total = [], 0.0
        for c in cands:
            step = self.step_cost([c], stop)
            if total + step <= self.left() - reserve + 1e-9:
                paid.append(c)
                total += step
            else:
                self.skipped.append(f"{c.kind} {c.tree.describe()} to epoch {stop}")
        todo = [c for c in paid if stop not in c.results]
        self.bar.set_postfix_str(f"{len(todo)} candidate(s) to epoch {stop} of {self.epochs}")
        for c, found in zip(todo, self.evidence.obtain([Unit(c.tree, self.epochs, self.seed, stop) for c in todo])):
            c.results[stop] = found
        self.bar.n = round(self.evidence.spent / self.epochs, 4)
        self.bar.refresh()
        return paid

    def scores(self, cands: Sequence[Candidate], stop: int) -> dict[str, float]:
        """Each candidate's trade-off score at ``stop``, against the best value any of them reached."""
        refs = references([c.results[stop].result.val for c in cands], self.space)
        return {c.tree.key: trade_off_score(float(np.mean(list(task_terms(c.results[stop].result.val, refs,
                                                                             self.space).values()))),
                                            self.evidence.cost(c.tree), self.gain) for c in cands}

    def at(self, stop: int) -> list[Candidate]:
        return [c for c in self.candidates.values() if stop in c.results]
