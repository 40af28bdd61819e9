"""The pooled truth of a case: every tree worth comparing, trained on several seeds, scored as the
default search scores.

A case's **pool** (``benchmarks/pools/CASE.json``, kept in the repository so that anyone rebuilds
the same truth) holds the case's reference trees (the planted tree among them), every tree that a
method found in ``benchmarks.regret``'s searches, and, where an exhaustive ranking exists
(``benchmarks.exhaustive``), its top 10 by delta-m and by score. Each entry names where it came
from. A method that finds a tree that is not in the pool adds it.

The **truth** trains every tree of the pool as ``mtnas retrain`` would (the space's
``training.epochs``, what a user keeps) on ``TRUTH_SEEDS`` seeds. A seed sets both the data (the
dataset is generated from it) and the initial weights. The truth seeds are apart from the searches'
seeds (0-4): a search that picked a tree because its own training of it was lucky is judged on
trainings it never saw. Each training is a unit of evidence in this machine's evidence folder
(``$MTNAS_CACHE_DIR/evidence``), so a tree added to the pool trains only itself, and a truth whose
units are all there is rebuilt in seconds.

Each tree is scored per seed on the **test** split as the default search scores (the trade-off
every study samples): the mean over tasks of its relative change against the best value any tree
of the pool reached on that task on that seed (``mtnas.search.references``: delta-m with the
pool's best as reference, so no single-task network is trained), less ``search.gain_per_cost``
points per all-shared network's worth of extra cost (``search.cost_metric``). The pool keeps each
tree's mean and standard error over the seeds.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from benchmarks._cases import CASES
from mtnas.space import trade_off_score
from mtnas.tree import BranchingTree

POOL_DIR = Path(__file__).parent / "pools"
#: The seeds the truth trains every tree on: apart from the searches' seeds 0-4.
TRUTH_SEEDS = (1000, 1001, 1002, 1003)
FORMAT = "mtnas-regret-pool"


def load_case(case: str, seed: int):
    """The case's resolved space and dataset with ``seed`` (the data and the weights' seed)."""
    from mtnas.space import load_resolved, load_space

    return load_resolved(replace(load_space(CASES[case].space), seed=seed))


@dataclass
class Pool:
    """The trees of one case's truth, each with where it came from, in the order they joined."""

    case: str
    trees: dict[str, BranchingTree] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return POOL_DIR / f"{self.case}.json"

    @classmethod
    def load(cls, case: str) -> Pool:
        """The stored pool of ``case``; a new one holding the case's reference trees when none is stored."""
        pool = cls(case)
        if pool.path.is_file():
            data = json.loads(pool.path.read_text())
            if data.get("format") != FORMAT or data.get("case") != case:
                raise ValueError(f"{pool.path}: not the pool of case {case!r}")
            for entry in data["trees"]:
                pool.add(BranchingTree.from_dict(entry["tree"]), *entry["sources"])
        space, bundle = load_case(case, 0)
        for label, tree in CASES[case].references(space, bundle).items():
            pool.add(tree, f"reference: {label}")
        return pool

    def add(self, tree: BranchingTree, *sources: str) -> bool:
        """Add ``tree`` (or only its sources, when it is in the pool); True when it is new."""
        new = tree.key not in self.trees
        self.trees.setdefault(tree.key, tree)
        known = self.sources.setdefault(tree.key, [])
        known += [s for s in sources if s not in known]
        return new

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries = [{"tree": t.to_dict(), "sources": self.sources[k]} for k, t in self.trees.items()]
        self.path.write_text(json.dumps({"format": FORMAT, "version": 1, "case": self.case, "trees": entries},
                                        indent=1) + "\n")


def train_seed(case: str, trees: Sequence[dict], seed: int) -> tuple[str, int, dict[str, dict], dict[str, float], float]:
    """Every tree (as ``BranchingTree.to_dict()``) trained at the space's budget on ``seed``, as units
    of evidence: per tree key its test metrics, and its relative cost; the seconds spent training."""
    from mtnas.search import Evidence, Unit

    torch.set_num_threads(1)
    space, bundle = load_case(case, seed)
    evidence = Evidence(space, bundle)
    units = [Unit(BranchingTree.from_dict(t), space.training.epochs, seed) for t in trees]
    found = evidence.obtain(units)
    return (case, seed, {u.tree.key: f.result.test for u, f in zip(units, found)},
            {u.tree.key: evidence.cost(u.tree) for u in units}, evidence.seconds)


@dataclass(frozen=True)
class TreeTruth:
    """One tree's score and delta-m over the truth seeds: mean and standard error."""

    tree: BranchingTree
    score: float
    score_se: float
    delta_m: float
    delta_m_se: float
    cost: float
    per_seed: tuple[float, ...]


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0


def truth(pool: Pool, trained: dict[int, dict[str, dict]], costs: dict[str, float]) -> dict[str, TreeTruth]:
    """Each tree's truth from its test metrics per seed (``trained``: seed -> tree key -> metrics)."""
    from mtnas.search import references, task_terms

    space, _ = load_case(pool.case, 0)
    gain = space.search.gain_per_cost
    terms: dict[str, list[float]] = {k: [] for k in pool.trees}
    for seed, results in sorted(trained.items()):
        refs = references(list(results.values()), space)
        for key in pool.trees:
            terms[key].append(statistics.mean(task_terms(results[key], refs, space).values()))
    out = {}
    for key, tree in pool.trees.items():
        scores = [trade_off_score(t, costs[key], gain) for t in terms[key]]
        (score, score_se), (dm, dm_se) = _mean_se(scores), _mean_se(terms[key])
        out[key] = TreeTruth(tree, score, score_se, dm, dm_se, costs[key], tuple(scores))
    return out
