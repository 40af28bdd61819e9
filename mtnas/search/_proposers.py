"""The budgeted search's proposers: each puts candidate trees into the pool at the first rung.

``search.proposers`` names them, in the order they run; each admits what the budget pays at the
first rung while keeping enough to take the dearest candidate admitted so far to the end, so the
earlier proposers are paid first. Each candidate carries its proposer's name (its trial's ``kind``).

* ``pair_model``: the additive pair model (``mtnas.search._pairs``) fitted to the groupings split
  at the first layer that may branch, the all-shared network's gradient agreement after the first
  rung (``mtnas.search._gradients``) its prior, proposes the best grouping of each size there
  (twice where there is no agreement: a trainings table);
* ``depth``: the best grouping of the first rung, at whatever layer, split at every other layer;
* ``two_level``: the best grouping at one layer and its largest group halved (by the agreement)
  deeper;
* ``agreement``: the agreement's best grouping into k groups, k = 2..K, split at every layer that
  may hold it, the cheapest trees first;
* ``tag``: TAG's lookahead affinity (Fifty et al. 2021, ``mtnas.search._tag``), measured on the
  all-shared network after its first rung instead of over a whole training of its own: its best
  groupings, proposed as the agreement's are.

The default order (the first four) puts the agreement's groupings at every layer last: first
they took all that 3 trainings pay, and the pair model, the depth and two-level moves never ran
(the order measured with ``python -m benchmarks.regret``, one proposer left out at a time, in
``benchmarks/README.md``). The supernet methods, ``rsa`` and ``pairs`` are not proposers: each
trains more than the targets' budgets hold before it names a tree (their costs are there too).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mtnas.core import ConfigError, Registry, did_you_mean
from mtnas.search._candidate_pool import Candidate, CandidatePool
from mtnas.search._gradients import gradient_agreement
from mtnas.search._pairs import PairModel
from mtnas.search._partitions import Groups, best_partition, groups_of
from mtnas.search._scores import references, task_terms
from mtnas.search._tag import mean_tag_affinity, tag_total
from mtnas.search._trained import _split, agreement_grouping
from mtnas.tree import BranchingTree

if TYPE_CHECKING:
    from mtnas.space import SearchConfig

__all__ = ["PROPOSERS", "Proposal", "Proposer", "check_proposers"]


@dataclass
class Proposal:
    """What the proposers of one search share: the pool, the layers that may branch and their
    limits, the all-shared candidate's signals (None where the evidence holds no network), the
    first-layer groupings tried, and the notes for the result."""

    pool: CandidatePool
    shared: Candidate
    branchable: list[int]
    limit: tuple[int, ...]
    notes: list[str]
    tried: set[Groups] = field(default_factory=set)
    _signals: dict[str, np.ndarray | None] = field(default_factory=dict)

    @property
    def stop(self) -> int:
        return self.pool.rungs[0]

    @property
    def sizes(self) -> range:
        tasks = self.pool.space.task_names
        return range(2, min(self.limit[self.branchable[0]], len(tasks)) + 1)

    def signal(self, name: str, compute: Callable[..., np.ndarray]) -> np.ndarray | None:
        """The all-shared network's ``name`` after the first rung, kept with its unit of evidence."""
        if name not in self._signals:
            n = len(self.pool.space.task_names)
            self._signals[name] = self.pool.evidence.extra(self.shared.results[self.stop].unit, name, compute,
                                                           shape=(n, n))
        return self._signals[name]

    def admit(self, trees: Sequence[BranchingTree], kind: str) -> None:
        """The trees, in order, that the budget pays at the first rung while keeping enough to take
        the dearest candidate admitted so far to the end; the others dropped."""
        pool, stop = self.pool, self.stop
        fresh = pool.add(trees, kind)
        dearest = max([pool.evidence.cost(c.tree) for c in pool.at(stop)], default=1.0)
        chosen, total = [], 0.0
        for c in fresh:
            step, dear = pool.step_cost([c], stop), max(dearest, pool.evidence.cost(c.tree))
            if total + step <= pool.left() - (pool.epochs - stop) * dear + 1e-9:
                chosen.append(c)
                total, dearest = total + step, dear
            else:
                pool.skipped.append(f"{c.kind} {c.tree.describe()} to epoch {stop}")
        paid = pool.advance(chosen, stop)
        for c in fresh:
            if c not in paid:
                pool.drop(c)

    def groupings_everywhere(self, groupings: Sequence[Groups], kind: str) -> None:
        """Each grouping at every layer that may hold it, the cheapest trees first."""
        tasks, layers = self.pool.space.task_names, self.pool.space.num_layers
        trees = [_split(tasks, layers, layer, g) for g in groupings for layer in self.branchable
                 if len(g) <= self.limit[layer]]
        self.admit(sorted(trees, key=self.pool.evidence.cost), kind)


#: A proposer adds its candidates to the pool (``Proposal.admit``).
Proposer = Callable[[Proposal], None]

PROPOSERS: Registry[Proposer] = Registry("proposer")


@PROPOSERS.register("agreement")
def agreement(p: Proposal) -> None:
    """The gradient agreement's best groupings, at every layer that may hold them."""
    a = p.signal("agreement", gradient_agreement)
    if a is None:
        p.notes.append("no gradient agreement (the evidence holds no network): the pair model proposes the first "
                       "groupings alone")
        return
    tasks = p.pool.space.task_names
    p.groupings_everywhere([agreement_grouping(a, tasks, k) for k in p.sizes], "agreement")


@PROPOSERS.register("tag")
def tag(p: Proposal) -> None:
    """TAG's best groupings by its lookahead affinity, at every layer that may hold them."""
    z = p.signal("lookahead", mean_tag_affinity)
    if z is None:
        p.notes.append("no TAG affinity (the evidence holds no network): the tag proposer proposed nothing")
        return
    tasks = p.pool.space.task_names
    sym = (z + z.T) / 2
    np.fill_diagonal(sym, 0.0)
    groupings = [groups_of(tasks, best_partition(lambda lab: tag_total(z, lab), k, sym.max() - sym)) for k in p.sizes]
    p.groupings_everywhere(groupings, "tag")


@PROPOSERS.register("pair_model")
def pair_model(p: Proposal) -> None:
    """The pair model's next grouping of each size at the first layer that may branch, the gradient
    agreement its prior (twice where there is none: a trainings table)."""
    pool, first = p.pool, p.branchable[0]
    tasks, layers = pool.space.task_names, pool.space.num_layers
    a = p.signal("agreement", gradient_agreement)
    prior = 0.1 * (a - a.mean()) if a is not None else np.zeros((len(tasks), len(tasks)))
    p.tried |= {_grouping(c.tree) for c in pool.at(p.stop)}
    for _ in range(1 if a is not None else 2):
        groupings, terms = _observations(pool, first, p.stop)
        model = PairModel.fit(tasks, groupings, terms, prior)
        proposals = [g for g in (model.best(k, exclude=p.tried) for k in p.sizes) if g is not None]
        p.tried.update(proposals)
        p.admit([_split(tasks, layers, first, g) for g in proposals], "pair model")


@PROPOSERS.register("depth")
def depth(p: Proposal) -> None:
    """The first rung's best grouping, at whatever layer, split at every other layer."""
    best = _best_grouping(p.pool, p.stop)
    if best is not None:
        tasks, layers = p.pool.space.task_names, p.pool.space.num_layers
        p.admit([_split(tasks, layers, layer, best) for layer in p.branchable if len(best) <= p.limit[layer]], "depth")


@PROPOSERS.register("two_level")
def two_level(p: Proposal) -> None:
    """The first rung's best grouping at one layer and its largest group halved by the agreement deeper."""
    best, a = _best_grouping(p.pool, p.stop), p.signal("agreement", gradient_agreement)
    if best is None or a is None:
        return
    big = max(best, key=len)
    if len(big) < 2:
        return
    tasks, layers = p.pool.space.task_names, p.pool.space.num_layers
    index = [tasks.index(t) for t in big]
    fine = tuple(g for g in best if g != big) + agreement_grouping(a[np.ix_(index, index)], big, 2)
    p.admit([BranchingTree.from_split_points(tasks, layers, {upper: best, deeper: fine})
             for upper, deeper in itertools.combinations(p.branchable, 2)
             if len(best) <= p.limit[upper] and len(fine) <= p.limit[deeper]], "two-level")


def check_proposers(cfg: SearchConfig, where: str = "search") -> tuple[str, ...]:
    """``cfg.proposers`` if each names a registered proposer, once; else a ConfigError at its key."""
    for name in cfg.proposers:
        if name not in PROPOSERS:
            raise ConfigError(f"{where}.proposers: unknown proposer {name!r}{did_you_mean(name, PROPOSERS.names())}; "
                              f"valid: {', '.join(PROPOSERS.names())}")
    if len(set(cfg.proposers)) != len(cfg.proposers):
        raise ConfigError(f"{where}.proposers: each proposer once, got {list(cfg.proposers)}")
    return cfg.proposers


def _grouping(tree: BranchingTree) -> Groups:
    return tree.first_split() or (tuple(tree.tasks),)


def _observations(pool: CandidatePool, layer: int, stop: int) -> tuple[list[Groups], list[list[float]]]:
    """The candidates at ``stop`` that group the tasks once (all-shared, or one split at ``layer``):
    their groupings and per-task terms."""
    cands = [c for c in pool.at(stop) if c.tree.first_split() is None
             or (c.tree.first_split_layer == layer and c.tree.partitions[-1] == c.tree.first_split())]
    refs = references([c.results[stop].result.val for c in cands], pool.space)
    rows = []
    for c in cands:
        terms = task_terms(c.results[stop].result.val, refs, pool.space)
        rows.append([terms[t] for t in pool.space.task_names])
    return [_grouping(c.tree) for c in cands], rows


def _best_grouping(pool: CandidatePool, stop: int) -> Groups | None:
    """The grouping of the best candidate at ``stop`` that splits once, at whatever layer (None: none does)."""
    cands = [c for c in pool.at(stop) if c.tree.first_split() is not None
             and c.tree.partitions[-1] == c.tree.first_split()]
    if not cands:
        return None
    scores = pool.scores(pool.at(stop), stop)
    return _grouping(max(cands, key=lambda c: scores[c.tree.key]).tree)
