"""The regret benchmark's arithmetic: the pooled truth's scores, the pool's file, and the within-noise rule."""

from __future__ import annotations

import statistics

import pytest

from benchmarks import _pool, regret
from benchmarks._pool import Pool, TreeTruth, truth
from mtnas.tree import BranchingTree

TASKS = ("digit", "parity", "ge5", "orientation", "frequency", "diagonal")
SHARED = BranchingTree.all_shared(TASKS, 4)
SPLIT = BranchingTree.from_split_points(TASKS, 4, {1: (TASKS[:3], TASKS[3:])})


def _metrics(acc: float) -> dict[str, dict[str, float]]:
    return {t: {"accuracy": acc} for t in TASKS}


def test_the_truth_scores_each_seed_against_the_pools_best_and_charges_the_cost() -> None:
    pool = Pool("digit_gratings", {SHARED.key: SHARED, SPLIT.key: SPLIT}, {SHARED.key: ["a"], SPLIT.key: ["b"]})
    # seed 1: the split is best on every task; seed 2: all-shared is
    trained = {1: {SHARED.key: _metrics(0.8), SPLIT.key: _metrics(1.0)},
               2: {SHARED.key: _metrics(0.9), SPLIT.key: _metrics(0.6)}}
    found = truth(pool, trained, {SHARED.key: 1.0, SPLIT.key: 2.0})
    shared, split = found[SHARED.key], found[SPLIT.key]
    assert shared.per_seed == pytest.approx((-20.0, 0.0))  # 0.8 is 20% below the seed's best
    gain = 5.0  # digit_gratings' search.gain_per_cost
    assert split.per_seed == pytest.approx((0.0 - gain, -100 / 3 - gain))
    assert split.delta_m == pytest.approx(-50 / 3) and split.cost == 2.0
    assert shared.score_se == pytest.approx(statistics.stdev([-20.0, 0.0]) / 2 ** 0.5)


def test_a_pool_keeps_its_trees_and_sources_and_starts_from_the_references(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_pool, "POOL_DIR", tmp_path)
    pool = Pool.load("digit_gratings")
    assert len(pool.trees) == 3 and all(s[0].startswith("reference: ") for s in pool.sources.values())
    found = BranchingTree.from_split_points(TASKS, 4, {3: (TASKS[:3], TASKS[3:])})
    assert pool.add(found, "found: trained seed 0") and not pool.add(found, "found: pairs seed 1")
    pool.save()
    again = Pool.load("digit_gratings")
    assert list(again.trees) == list(pool.trees)
    assert again.sources[found.key] == ["found: trained seed 0", "found: pairs seed 1"]


def _truth(score: float, se: float = 0.0, dm: float | None = None) -> TreeTruth:
    return TreeTruth(SHARED, score, se, score if dm is None else dm, 0.0, 1.0, (score,))


def _rows(trees: list[BranchingTree], method: str = "trained", cost: float = 3.0) -> list[dict]:
    return [{"case": "c", "method": method, "seed": s, "tree": t.to_dict(), "cost": cost, "cost_kind": "ledger"}
            for s, t in enumerate(trees)]


TREES = [BranchingTree.from_split_points(TASKS, 4, {layer: (TASKS[:k], TASKS[k:])}) for layer in range(4) for k in (2, 3)]


@pytest.mark.parametrize(("regrets", "se", "within"), [
    ((0, 0, 0, 0.4, 1.0), 0.1, True),      # median 0 <= 0.5, max 1.0 <= 1.0
    ((0, 0, 0.6, 0.6, 0.6), 0.1, False),   # median 0.6 > max(0.5, SE)
    ((0, 0, 0.6, 0.6, 0.6), 0.7, True),    # ... but within one SE of a noisy best
    ((0, 0, 0, 0, 1.2), 0.1, False),       # max 1.2 > max(1.0, 2 SE)
    ((0, 0, 0, 0, 1.2), 0.65, True),       # ... but within 2 SE
])
def test_within_noise_is_the_median_within_one_se_and_the_worst_within_two(regrets, se, within) -> None:
    trees = TREES[:len(regrets)]
    best = TreeTruth(TREES[-1], 10.0, se, 4.0, 0.0, 1.0, (10.0,))
    truths = {"c": {TREES[-1].key: best, **{t.key: TreeTruth(t, 10.0 - r, 0.0, 3.0, 0.0, 1.0, (10.0 - r,))
                                           for t, r in zip(trees, regrets)}}}
    (row,) = regret.regrets(_rows(trees), truths, ["trained"], ["c"])
    assert row["within"] is within
    assert row["median"] == pytest.approx(statistics.median(regrets)) and row["max"] == pytest.approx(max(regrets))
    assert row["median_dm"] == pytest.approx(1.0) and row["cost"] == 3.0


def test_a_method_that_could_not_run_is_reported_with_its_reason_and_not_counted(capsys) -> None:
    truths = {"c": {TREES[0].key: TreeTruth(TREES[0], 0.0, 0.0, 0.0, 0.0, 1.0, (0.0,))}}
    rows = _rows(TREES[:1]) + [{"case": "c", "method": "pairs", "seed": 0, "error": "too many tasks"}]
    table = regret.regrets(rows, truths, ["pairs", "trained"], ["c"])
    regret.print_report(table, ["trained", "pairs"])
    out = capsys.readouterr().out
    assert "not run: too many tasks" in out
    assert "regret [pairs]" not in out
    assert out.strip().splitlines()[-1] == "regret [trained]: 1/1 cases within noise, mean cost 3.00x"


def test_a_benchmark_method_names_its_budget_and_its_proposers() -> None:
    from benchmarks._methods import method_settings, unknown_methods
    from mtnas.space import SearchConfig

    assert method_settings("trained") == ("trained", {})
    assert method_settings("budget@2.5") == ("budget", {"budget": 2.5})
    default = list(SearchConfig().proposers)
    name, settings = method_settings("budget@3:-depth:+tag")
    assert name == "budget" and settings["budget"] == 3.0
    assert settings["proposers"] == tuple([p for p in default if p != "depth"] + ["tag"])
    assert method_settings("budget@3:-agreement:+agreement")[1]["proposers"][-1] == "agreement"  # moved last
    assert unknown_methods(["budget@3:-depht", "budget@3", "nope", "budget@3:+tag"]) == ["budget@3:-depht", "nope"]
