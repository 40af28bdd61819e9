"""Search methods that decide the sharing from trained trees: ``trained`` (the default) and
``pairs`` (Standley et al. 2020).

``trained`` decides on trained trees, each a unit of evidence (``mtnas.train.Evidence``: trained
once, whichever process of a study gets to it first). What each step was measured to do, and the
variants that were tried and dropped, are in ``benchmarks/README.md`` (fourth round):

1. **Signal.** The all-shared tree is trained for the whole budget (``SearchSpace.proxy_epochs``),
   and the per-sample gradient agreement of its tasks is read off the trained network
   (``mtnas.search._gradients``, added to the unit's stored evidence: ``Evidence.extra``). Its best
   partition into k groups, for every k = 2..K, is the first proposal of each size. It only
   proposes: it cannot see what a task's loss scale or its pace of learning does to its partners,
   so its groupings are often wrong on few tasks.
2. **Groupings, trained for the whole budget.** Every proposal is trained split at the first layer
   that may branch. An additive model of what each partner does to each task
   (``mtnas.search._pairs.PairModel.fit``) is fitted to every trained grouping and proposes the next
   grouping of each size (``ROUNDS`` rounds). The groupings within one training's noise of the best
   (the all-shared tree trained again with a second seed gives the noise) are trained with a
   second seed too, and the best mean of two goes on: one seed alone can put a wrong grouping
   ahead of the right one by less than its noise. The groupings are trained whole, not short,
   because a short training can hide the harm a slowly learning task suffers from its partners.
3. **Depth and hierarchy, short** (``SearchSpace.short_epochs``, by default a fifth of the
   budget: the first epochs of the whole schedule). The best grouping split at each later layer
   that may branch, and as two-level trees: a coarser grouping (the two groups the model says
   harm each other least, merged) at one layer and the grouping deeper, or the grouping at one
   layer and its largest group split in two deeper. These candidates move a grouping's split, not
   its members, which short trainings rank as whole ones do.
4. **The choice.** Short terms are larger than whole ones (every tree is further from what it will
   learn): the trees trained for both budgets give the scale, each short tree's score is
   re-estimated at it, and the best estimate is trained for the whole budget if it beats the whole
   trees. Among the whole trees, those within one training's noise of the best are trained again
   with a second seed, and the cheapest within the noise of the best two-seed mean is the tree
   found (the one-standard-error rule).

Evidence answered by a store holds no network (a trainings table, ``mtnas.search._table``), so
there is no gradient agreement to read: the first groupings of step 2 are then the model's too,
fitted to the all-shared network and the single-task networks (the independent tree's
observation, which says how each task fares with partners at all), with no prior, and the
result's ``notes`` say so.

Trees are compared by their mean task term against the best value any trained tree reached on
each task (``mtnas.search._scores``: delta-m with the best trained tree as reference, so no
single-task network is trained), less ``search.gain_per_cost`` points for each all-shared
network's worth of extra cost (``search.cost_metric``; ``mtnas.space.trade_off_score``): the
trade-off a study's trials sample to fill the front.

``pairs`` is Standley et al.'s selection as they describe it: every pair of tasks trained as one
network for the whole budget, a grouping estimated by the mean of its pairs, one network per group
(the split at the first layer that may branch), the number of groups chosen by the same trade-off,
no further training.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from mtnas.core import ConfigError
from mtnas.data import DatasetBundle
from mtnas.search._gradients import gradient_agreement
from mtnas.search._pairs import PAIR_TASKS, PairModel
from mtnas.search._partitions import Groups, best_partition, canonical, groups_of
from mtnas.search._result import SearchResult
from mtnas.search._routing import space_branches
from mtnas.search._scores import references, task_terms
from mtnas.space import SearchConfig, SearchSpace, trade_off_score
from mtnas.train import (
    AnsweringStore,
    Evidence,
    EvidenceStore,
    TaskMetrics,
    Trained,
    Unit,
    per_task_delta,
    subset_space,
)
from mtnas.tree import BranchingTree

__all__ = ["PairsSelection", "TrainedSearch", "agreement_grouping", "pair_model"]

#: Rounds of the fitted pair model's proposals after the first (each trains at most one grouping per size).
ROUNDS = 1
#: The note of a search without gradient agreement (``SearchResult.notes``).
NO_AGREEMENT = ("no gradient agreement: the evidence holds no trained network (a store answered every unit); the "
                "first groupings were proposed by the pair model fitted to the all-shared and single-task networks")


def _limits(space: SearchSpace, branches: int | Sequence[int] | None) -> tuple[list[int], tuple[int, ...]]:
    """The layers that may branch and the most groups each layer may hold."""
    k = space_branches(space, branches)
    return [layer for layer in range(space.num_layers) if space.can_branch[layer] and k[layer] > 1], k


def agreement_grouping(agreement: np.ndarray, tasks: Sequence[str], k: int) -> Groups:
    """The partition into ``k`` groups with the most agreement within groups: exactly over every
    partition when there are few enough, else by single-task moves from average linkage."""
    a = agreement.copy()
    np.fill_diagonal(a, 0.0)

    def within(labels: np.ndarray) -> float:
        return float((a * (labels[:, None] == labels[None, :])).sum())

    return canonical(groups_of(tuple(tasks), best_partition(within, k, a.max() - a)), tasks)


@dataclass
class _Search:
    """The state of one ``trained`` search: the trees trained for the first ``short`` epochs of
    the whole schedule (``full`` epochs), and those trained for all of it, each set scored against
    itself."""

    space: SearchSpace
    evidence: Evidence
    seed: int
    short: int
    full: int
    gain: float

    def __post_init__(self) -> None:
        self.tasks, self.layers = self.space.task_names, self.space.num_layers
        self.trained: dict[bool, dict[str, Trained]] = {False: {}, True: {}}  # whole budget? -> key -> unit
        self.alone: TaskMetrics | None = None  # each task in its own network, when obtained (``independent``)

    def cost(self, tree: BranchingTree) -> float:
        """The tree's cost relative to the all-shared tree's."""
        return self.evidence.cost(tree)

    def unit(self, tree: BranchingTree, whole: bool = False, seed: int | None = None) -> Unit:
        return Unit(tree, self.full, self.seed if seed is None else seed, None if whole else self.short)

    def train(self, trees: Sequence[BranchingTree], whole: bool = False) -> list[Trained]:
        known = self.trained[whole]
        new = [t for t in dict.fromkeys(trees) if t.key not in known]
        for tree, found in zip(new, self.evidence.obtain([self.unit(t, whole) for t in new])):
            known[tree.key] = found
        return [known[t.key] for t in trees]

    def independent(self) -> TaskMetrics:
        """Each task's metrics in its own network for the whole budget (T units): what the
        independent tree observes, without a tree that is a candidate of the choice."""
        if self.alone is None:
            units = [Unit(BranchingTree.all_shared((t,), self.layers), self.full, self.seed) for t in self.tasks]
            self.alone = {t: f.result.val[t] for t, f in zip(self.tasks, self.evidence.obtain(units))}
        return self.alone

    def terms(self, whole: bool = False) -> dict[str, float]:
        """Each tree's mean task term against the best value its budget's trees reached on each task."""
        known = self.trained[whole]
        refs = references([f.result.val for f in known.values()], self.space)
        return {k: float(np.mean(list(task_terms(f.result.val, refs, self.space).values()))) for k, f in known.items()}

    def score(self, key: str, term: float) -> float:
        """A trained tree's ``term`` less its cost's penalty (``mtnas.space.trade_off_score``)."""
        tree = (self.trained[False].get(key) or self.trained[True][key]).unit.tree
        return trade_off_score(term, self.cost(tree), self.gain)

    def scores(self, whole: bool = False, scale: float = 1.0) -> dict[str, float]:
        """Mean term (times ``scale``) less the cost penalty, for the trees of one budget."""
        return {k: self.score(k, scale * v) for k, v in self.terms(whole).items()}


def _split(tasks: Sequence[str], layers: int, layer: int, groups: Groups) -> BranchingTree:
    return BranchingTree.from_split_points(tasks, layers, {layer: groups})


#: The second seed of the noise measurement is the evaluation seed plus this.
AGAIN_SEED = 7919


class TrainedSearch:
    """Trained groupings proposed by gradient agreement and a fitted pair model (module docstring)."""

    kind = "trained"
    uses = ("gain_per_cost",)
    units_only = True  # it reads nothing but units of evidence: a store that answers them (a trainings table) will do

    def search(self, space: SearchSpace, bundle: DatasetBundle | None, *, seed: int, hparams: SearchConfig,
               device: torch.device, branches: int | Sequence[int] | None = None, progress: bool = False,
               eval_seed: int | None = None, store: EvidenceStore | AnsweringStore | None = None) -> SearchResult:
        start = time.perf_counter()
        space = replace(space, search=hparams)
        evidence = Evidence(space, bundle, device=device, store=store, progress=progress)
        notes = []
        run = _Search(space, evidence, seed if eval_seed is None else eval_seed, space.short_epochs,
                      space.proxy_epochs, hparams.gain_per_cost)
        tasks, layers = space.task_names, space.num_layers
        shared = BranchingTree.all_shared(tasks, layers)
        (base,) = run.train([shared], whole=True)
        agreement = evidence.extra(base.unit, "agreement", gradient_agreement, shape=(len(tasks), len(tasks)))
        run.train([shared])
        branchable, limit = _limits(space, branches)
        if branchable:
            first = branchable[0]
            sizes = range(2, min(limit[first], len(tasks)) + 1)
            if agreement is None:
                notes.append(NO_AGREEMENT)
            best, model = _groupings(run, agreement, first, sizes)
            _depth_and_hierarchy(run, best, first, branchable, limit, agreement, model)
        chosen, noise, scale = _final(run, shared)
        return SearchResult(tree=chosen.unit.tree, derived=None, routing={}, weights=evidence.weights(chosen.unit),
                            seconds=time.perf_counter() - start, hparams=hparams,
                            candidates=_history(run, noise, scale), spent=evidence.spent / space.proxy_epochs,
                            notes=tuple(notes))


def _final(run: _Search, shared: BranchingTree) -> tuple[Trained, float, float]:
    """Step 4: the choice among the trees trained for the whole budget.

    The short trainings' terms are larger than the whole ones' (every tree is further from what it
    will learn). The trees trained for both budgets give the scale (the least-squares slope of
    their whole terms on their short ones), every short tree's score is re-estimated at that scale,
    and the best of those is trained for the whole budget too if it is not yet. The choice is the
    cheapest tree whose whole-budget score is within one training's noise of the best (the
    one-standard-error rule: Breiman, Friedman, Olshen and Stone 1984), the noise measured on the
    all-shared tree trained again with a second seed.
    """
    short, whole = run.terms(), run.terms(whole=True)
    both = [k for k in short if k in whole]
    x = np.array([short[k] for k in both]) - np.mean([short[k] for k in both])
    y = np.array([whole[k] for k in both]) - np.mean([whole[k] for k in both])
    scale = float(np.clip((x @ y) / (x @ x), 0.05, 1.0)) if len(both) > 1 and x @ x > 1e-12 else 1.0
    offset = float(np.mean([whole[k] - scale * short[k] for k in both])) if both else 0.0
    estimated = {k: run.score(k, offset + scale * v) for k, v in short.items()}
    scores = run.scores(whole=True)
    top = max(estimated, key=estimated.get)
    if top not in run.trained[True] and estimated[top] > max(scores.values()):
        run.train([run.trained[False][top].unit.tree], whole=True)
        scores = run.scores(whole=True)
    noise = _noise(run, run.trained[True][shared.key])
    best = max(scores.values())
    close = [k for k, v in scores.items() if v >= best - noise]
    if len(close) > 1:  # a tie within one training's noise: a second seed of each settles it
        means = _two_seeds(run, close)
        top = max(means.values())
        close = [k for k, v in means.items() if v >= top - noise / np.sqrt(2)]
    choice = min(close, key=lambda k: (run.cost(run.trained[True][k].unit.tree), -scores[k]))
    return run.trained[True][choice], noise, scale


def _two_seeds(run: _Search, keys: Sequence[str]) -> dict[str, float]:
    """The whole-budget trees ``keys`` trained again with a second seed: each one's mean score
    over the two."""
    seconds = dict(zip(keys, run.evidence.obtain(
        [run.unit(run.trained[True][k].unit.tree, whole=True, seed=run.seed + AGAIN_SEED) for k in keys])))
    refs = references([f.result.val for f in run.trained[True].values()]
                      + [f.result.val for f in seconds.values()], run.space)
    return {k: run.score(k, (_mean_term(run.trained[True][k], refs, run) + _mean_term(seconds[k], refs, run)) / 2)
            for k in keys}


def _mean_term(found: Trained, refs: dict, run: _Search) -> float:
    return float(np.mean(list(task_terms(found.result.val, refs, run.space).values())))


def _noise(run: _Search, found: Trained) -> float:
    """One whole training's noise on a tree's mean term: the tree trained again with a second
    seed; each task's term moves by ``d_t`` between the two, and the mean term of one training has
    the standard deviation ``sqrt(mean(d_t^2) / T / 2)`` (tasks' noise independent)."""
    (again,) = run.evidence.obtain([run.unit(found.unit.tree, whole=True, seed=run.seed + AGAIN_SEED)])
    refs = references([f.result.val for f in run.trained[True].values()] + [again.result.val], run.space)
    first, second = task_terms(found.result.val, refs, run.space), task_terms(again.result.val, refs, run.space)
    d = np.array([first[t] - second[t] for t in run.tasks])
    return float(np.sqrt(np.mean(d ** 2) / len(d) / 2))


def _groupings(run: _Search, agreement: np.ndarray | None, layer: int, sizes: range) -> tuple[Groups, PairModel]:
    """Step 2: the trained groupings at ``layer``; returns the best one by score and the pair model
    fitted to all of them. Without gradient agreement (None), the model fitted to the all-shared
    and single-task networks proposes the first groupings too (one more round)."""
    tasks, layers = run.tasks, run.layers
    tried: set[Groups] = set()

    def train(groupings: list[Groups]) -> None:
        fresh = [g for g in dict.fromkeys(groupings) if g not in tried]
        tried.update(fresh)
        run.train([_split(tasks, layers, layer, g) for g in fresh], whole=True)

    if agreement is not None:
        train([agreement_grouping(agreement, tasks, k) for k in sizes])
        prior, rounds = 0.1 * (agreement - agreement.mean()), ROUNDS
    else:
        run.independent()  # an observation of every task alone: how much partners harm or help each
        prior, rounds = np.zeros((len(tasks), len(tasks))), ROUNDS + 1
    for _ in range(rounds):
        groupings, terms = _observations(run, layer)
        model = PairModel.fit(tasks, groupings, terms, prior)
        proposals = [g for g in (model.best(k, exclude=tried) for k in sizes) if g is not None]
        if not proposals:
            break
        train(proposals)
    keys = {g: _split(tasks, layers, layer, g).key for g in tried}
    whole = run.scores(whole=True)
    scores = {g: whole[key] for g, key in keys.items()}
    best = max(scores, key=scores.get)
    noise = _noise(run, run.trained[True][BranchingTree.all_shared(tasks, layers).key])
    close = [g for g in tried if scores[g] >= scores[best] - noise]
    if len(close) > 1:  # groupings within one training's noise: a second seed of each settles which goes on
        means = _two_seeds(run, [keys[g] for g in close])
        best = max(close, key=lambda g: means[keys[g]])
    run.train([_split(tasks, layers, layer, best)])  # its short training: the scale of the short ones
    return best, PairModel.fit(tasks, *_observations(run, layer), prior)


def _observations(run: _Search, layer: int) -> tuple[list[Groups], list[list[float]]]:
    """The trained trees that group the tasks once (all-shared, or one split at ``layer``), and the
    tasks alone when obtained (``_Search.independent``): their groupings and per-task terms."""
    known = run.trained[True]
    alone = [] if run.alone is None else [run.alone]
    refs = references([f.result.val for f in known.values()] + alone, run.space)
    groupings: list[Groups] = [tuple((t,) for t in run.tasks) for _ in alone]
    rows = [[task_terms(a, refs, run.space)[t] for t in run.tasks] for a in alone]
    for key, found in known.items():
        tree = found.unit.tree
        split = tree.first_split()
        if split is not None and (tree.first_split_layer != layer or tree.partitions[-1] != split):
            continue
        groupings.append(split or (tuple(run.tasks),))
        terms = task_terms(found.result.val, refs, run.space)
        rows.append([terms[t] for t in run.tasks])
    return groupings, rows


def _depth_and_hierarchy(run: _Search, groups: Groups, first: int, branchable: list[int], limit: tuple[int, ...],
                         agreement: np.ndarray | None, model: PairModel) -> None:
    """Step 3: the best grouping split at each later layer, and the two-level trees around it, for
    the short budget: a coarser grouping (the two groups that harm each other least by the fitted
    pair model merged, when it has three or more) at a layer and the grouping itself deeper, or the
    grouping at a layer and its largest group split in two deeper (by gradient agreement, or by
    the model's help between the tasks where there is none)."""
    tasks, layers = run.tasks, run.layers
    if agreement is None:
        agreement = model.harm + model.harm.T  # what each pair does for each other
    trees = [_split(tasks, layers, layer, groups) for layer in branchable if layer > first]
    levels = []  # (coarse, fine) partitions of a two-level tree
    if len(groups) > 2:
        pair = _closest_pair(groups, model)
        levels.append((tuple(g for g in groups if g not in pair) + (pair[0] + pair[1],), groups))
    big = max(groups, key=len)
    if len(big) > 1:
        index = [tasks.index(t) for t in big]
        halves = agreement_grouping(agreement[np.ix_(index, index)], big, 2)
        levels.append((groups, tuple(g for g in groups if g != big) + halves))
    for coarse, fine in levels:
        for upper, deeper in itertools.combinations(branchable, 2):
            if len(coarse) <= limit[upper] and len(fine) <= limit[deeper]:
                trees.append(BranchingTree.from_split_points(tasks, layers, {upper: coarse, deeper: fine}))
    run.train(trees)


def _closest_pair(groups: Groups, model: PairModel) -> tuple[tuple[str, ...], ...]:
    """The two groups whose tasks the fitted pair model says harm each other least (help most)."""
    index = {t: i for i, t in enumerate(model.tasks)}

    def between(a: tuple[str, ...], b: tuple[str, ...]) -> float:
        return float(sum(model.harm[index[x], index[y]] + model.harm[index[y], index[x]] for x in a for y in b))

    return max(itertools.combinations(groups, 2), key=lambda p: between(*p))


def _history(run: _Search, noise: float, scale: float) -> dict[str, np.ndarray]:
    """What the search trained, for ``candidates.json``: every tree with the epochs it was trained
    for, its mean task term against the best its budget reached (``delta_m``), its cost and score,
    the noise the choice allowed for, the scale of the short terms, and the units it obtained."""
    rows = []
    for whole in (False, True):
        terms, scores = run.terms(whole), run.scores(whole)
        rows += [(f, terms[k], scores[k]) for k, f in run.trained[whole].items()]
    units = run.evidence.order
    return {
        "trees": np.array([f.unit.tree.describe() for f, _, _ in rows]),
        "epochs": np.array([f.unit.trained_epochs for f, _, _ in rows]),
        "delta_m": np.array([t for _, t, _ in rows]),
        "cost": np.array([run.cost(f.unit.tree) for f, _, _ in rows]),
        "score": np.array([s for _, _, s in rows]),
        "noise": np.full(len(rows), noise),
        "scale": np.full(len(rows), scale),
        "units": np.full(len(rows), len(units)),
        "unit_cost": np.full(len(rows), run.evidence.spent),
    }


class PairsSelection:
    """Standley et al.'s pair-based selection (module docstring): estimates only, no trained trees."""

    kind = "trained"
    uses = ("gain_per_cost",)
    units_only = True  # it reads nothing but units of evidence: a store that answers them (a trainings table) will do

    def search(self, space: SearchSpace, bundle: DatasetBundle | None, *, seed: int, hparams: SearchConfig,
               device: torch.device, branches: int | Sequence[int] | None = None, progress: bool = False,
               eval_seed: int | None = None, store: EvidenceStore | AnsweringStore | None = None) -> SearchResult:
        if len(space.tasks) > PAIR_TASKS:
            raise ConfigError(f"{space.name or 'space'}.search.method: 'pairs' trains a network for every pair of "
                              f"tasks, {len(space.tasks) * (len(space.tasks) - 1) // 2:,} for {len(space.tasks)} tasks; "
                              f"it takes at most {PAIR_TASKS} tasks (the default 'trained' takes any number)")
        start = time.perf_counter()
        space = replace(space, search=hparams)
        seed = seed if eval_seed is None else eval_seed
        evidence = Evidence(space, bundle, device=device, store=store, progress=progress)
        model = pair_model(evidence, seed, mode="mean")
        run = _Search(space, evidence, seed, space.proxy_epochs, space.proxy_epochs, hparams.gain_per_cost)
        branchable, limit = _limits(space, branches)
        tasks, layers = space.task_names, space.num_layers
        options = [((tasks,), BranchingTree.all_shared(tasks, layers))]
        if branchable:
            s = branchable[0]
            options += [(groups, _split(tasks, layers, s, groups))
                        for groups in (model.best(k) for k in range(2, min(limit[s], len(tasks)) + 1))]
        values = [trade_off_score(model.estimate(groups), run.cost(tree), hparams.gain_per_cost) for groups, tree in options]
        tree = options[int(np.argmax(values))][1]
        unit = Unit(tree, space.proxy_epochs, seed)
        return SearchResult(tree=tree, derived=None, routing={}, weights=evidence.weights(unit),
                            seconds=time.perf_counter() - start, hparams=hparams,
                            spent=evidence.spent / space.proxy_epochs)


def pair_model(evidence: Evidence, seed: int, mode: str = "sum") -> PairModel:
    """Every task trained alone and every pair of tasks trained as one all-shared network, for the
    whole budget (``proxy_epochs``), each a unit of evidence: each task's delta-m beside its
    partner, against its own network (T + T (T - 1) / 2 trainings)."""
    space = evidence.space
    tasks = space.task_names
    pairs = list(itertools.combinations(tasks, 2))
    trees = [BranchingTree.all_shared((t,), space.num_layers) for t in tasks]
    trees += [BranchingTree.all_shared(p, space.num_layers) for p in pairs]
    found = evidence.obtain([Unit(tree, space.proxy_epochs, seed) for tree in trees])
    solo = {t: f.result.val[t] for t, f in zip(tasks, found)}
    deltas = np.zeros((len(tasks), len(tasks)))
    index = {t: i for i, t in enumerate(tasks)}
    for (a, b), pair in zip(pairs, found[len(tasks):]):
        d = per_task_delta(pair.result.val, {t: solo[t] for t in (a, b)}, subset_space(space, (a, b)))
        deltas[index[a], index[b]], deltas[index[b], index[a]] = d[a], d[b]
    return PairModel(tasks, deltas, mode=mode)

