"""Trainings tables: the format and its errors, units of evidence answered from a table, the
ledger of distinct networks, the trained methods run on a table, and the shipped Standley tables."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import _standley, _tables
from mtnas.core import ConfigError, MtnasError
from mtnas.search import METHODS, Evidence, TableStore, TrainingTable, Unit, read_table, table_space
from mtnas.tree import BranchingTree

TASKS = ("a", "b", "c", "d")
FRIENDS = ({"a", "b"}, {"c", "d"})


def _value(task: str, network: frozenset[str]) -> float:
    """A task's loss in a network: 1, less 0.2 per partner of its own pair, plus 0.3 per other."""
    friends = next(f for f in FRIENDS if task in f)
    return 1.0 + sum(-0.2 if t in friends else 0.3 for t in network if t != task)


def _table(missing: tuple[frozenset[str], float] | None = None, source: str = "planted.tsv") -> TrainingTable:
    """Every subset of TASKS at fidelity 1 (val and test, test 1% worse) and 0.2 (val, 0.5 worse):
    the best partition pairs a with b and c with d."""
    values = {}
    for size in range(1, len(TASKS) + 1):
        for network in map(frozenset, itertools.combinations(TASKS, size)):
            for fidelity, split, scale, shift in ((1.0, "val", 1.0, 0.0), (1.0, "test", 1.01, 0.0), (0.2, "val", 1.0, 0.5)):
                if (network, fidelity) != missing or split != "val":
                    values[(network, fidelity, split)] = {t: scale * _value(t, network) + shift for t in network}
    return TrainingTable(TASKS, "lower", values, source)


def _unit(groups, *, seed: int = 0, stop: int | None = None, layers: int = 1) -> Unit:
    tree = (BranchingTree.all_shared(groups[0], layers) if len(groups) == 1
            else BranchingTree.from_split_points(TASKS, layers, {0: groups}))
    return Unit(tree, 5, seed, stop=stop)


def test_a_unit_is_answered_with_the_tables_rows_and_a_second_seed_gets_the_same() -> None:
    table = _table()
    space, store = table_space(table), TableStore(table)
    evidence = Evidence(space, None, store=store)
    split, pair, short = _unit((("a", "b"), ("c", "d"))), _unit((("a", "c"),)), _unit((TASKS,), stop=1)
    found = dict(zip(("split", "pair", "short"), evidence.obtain([split, pair, short])))
    assert found["split"].result.val == {t: {"abs_err": _value(t, frozenset(g))} for g in FRIENDS for t in g}
    assert found["split"].result.test["a"]["abs_err"] == pytest.approx(1.01 * 0.8)
    assert found["pair"].result.val == {"a": {"abs_err": 1.3}, "c": {"abs_err": 1.3}}
    assert found["short"].result.val["a"]["abs_err"] == pytest.approx(_value("a", frozenset(TASKS)) + 0.5)
    assert found["short"].result.test == {}  # no test rows at fidelity 0.2: no split's value stands for another's
    (again,) = evidence.obtain([replace(split, seed=7)])
    assert again.result.val == found["split"].result.val
    assert evidence.extra(split, "agreement", lambda *a: 1 / 0) is None  # a table holds no network to read it off


def test_the_ledger_counts_each_network_once_at_the_furthest_fidelity_read() -> None:
    table = _table()
    evidence = Evidence(table_space(table), None, store=TableStore(table))
    evidence.obtain([_unit((("a", "b"),), stop=1)])
    assert evidence.spent / 5 == pytest.approx(0.2)  # ab after a fifth of its schedule
    evidence.obtain([_unit((TASKS,)), _unit((TASKS,), seed=1), _unit((("a", "b"), ("c", "d")))])
    assert evidence.spent / 5 == pytest.approx(3.0)  # abcd, ab (on to the end), cd; the second seed is the same network
    evidence.obtain([_unit((TASKS,), stop=1), _unit((("a", "b"),)), _unit((("c", "d"),), seed=3)])
    assert evidence.spent / 5 == pytest.approx(3.0)  # abcd at 0.2 was on the way to its end: nothing new
    assert evidence.cost(BranchingTree.independent(TASKS, 1)) == 4.0
    assert evidence.cost(BranchingTree.all_shared(("a", "b"), 1)) == 1.0
    assert evidence.weights(_unit((TASKS,))) == {}


def test_a_missing_network_or_a_tree_split_below_the_first_layer_is_refused_with_one_line() -> None:
    table = _table(missing=(frozenset({"b", "c"}), 0.2))
    evidence = Evidence(table_space(table), None, store=TableStore(table))
    with pytest.raises(MtnasError) as err:
        evidence.obtain([_unit((("a", "d"), ("b", "c")), stop=1)])
    message = str(err.value)
    assert "\n" not in message and "network b+c at fidelity 0.2" in message and "planted.tsv" in message
    assert "fidelity 1" in message  # where the table does have it
    deep = Unit(BranchingTree.from_split_points(TASKS, 2, {1: (("a", "b"), ("c", "d"))}), 5, 0)
    with pytest.raises(MtnasError, match="splits at layer 1") as err:
        TableStore(table).answer(deep, table_space(table))
    assert "\n" not in str(err.value)
    with pytest.raises(MtnasError, match="dataset"):
        Evidence(table_space(table), None)  # no bundle and a store that trains: nothing to train on


GOOD = "# mtnas trainings table 1; better: lower\nnetwork\tfidelity\tsplit\ttask\tvalue\n"
ROWS = "a+b\t1\tval\ta\t0.5\na+b\t1\tval\tb\t0.25\n"


@pytest.mark.parametrize(("text", "line", "found"), [
    ("", 1, "an empty first line"),
    ("network\tfidelity\tsplit\ttask\tvalue\n" + ROWS, 1, "found 'network"),
    ("# mtnas trainings table 2; better: lower\n" + ROWS, 1, "format version '2'"),
    ("# mtnas trainings table 1; better: smaller\n" + ROWS, 1, "better: 'smaller'"),
    ("# mtnas trainings table 1; better: lower\nnetwork fidelity split task value\n" + ROWS, 2, "the column header"),
    (GOOD + "a+b\t1\tval\ta\n", 3, "4 tab-separated fields"),
    (GOOD + "a+b\t1\tval\ta\t0.5\t7\n", 3, "6 tab-separated fields"),
    (GOOD + "a+b\t1\ttrain\ta\t0.5\n", 3, "split 'train'"),
    (GOOD + "a+b\t1.5\tval\ta\t0.5\n", 3, "fidelity '1.5'"),
    (GOOD + "a+b\t0\tval\ta\t0.5\n", 3, "fidelity '0'"),
    (GOOD + "a+b\tfull\tval\ta\t0.5\n", 3, "fidelity 'full'"),
    (GOOD + "a+b\t1\tval\ta\tnan\n", 3, "value 'nan'"),
    (GOOD + "a+b\t1\tval\ta\tinf\n", 3, "value 'inf'"),
    (GOOD + "a+b\t1\tval\ta\tlow\n", 3, "value 'low'"),
    (GOOD + "a+b\t1\tval\tc\t0.5\n", 3, "task 'c' in network a+b"),
    (GOOD + "a++b\t1\tval\ta\t0.5\n", 3, "with task name ''"),
    (GOOD + "a+a\t1\tval\ta\t0.5\n", 3, "with a task twice"),
    (GOOD + "# a comment\n\n" + ROWS + "b+a\t0.9999999\tval\ta\t0.5\n", 7, "a second value of task a"),
    (GOOD + "a+b\t1\tval\ta\t0.5\n", 3, "without a value of task b"),
    (GOOD, 3, "no rows"),
])
def test_every_format_error_is_one_line_naming_the_file_the_line_and_what_was_expected(text, line, found) -> None:
    with pytest.raises(ConfigError) as err:
        TrainingTable.parse(text, "mine.tsv")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"mine.tsv:{line}: found ") and found in message
    assert ", expected " in message


def test_a_table_reads_back_what_it_writes_with_comments_and_any_task_order(tmp_path: Path) -> None:
    text = GOOD + "# the next network is written b+a\n\n" + "b+a\t1\ttest\tb\t0.5\nb+a\t1\ttest\ta\t2e-3\n" + ROWS
    table = TrainingTable.parse(text, "t.tsv")
    assert table.tasks == ("b", "a") and table.better == "lower"
    assert table.find({"a", "b"}, 1.0, "test") == {"b": 0.5, "a": 0.002}
    assert table.find({"a", "b"}, 1.0 + 1e-7, "val") == {"b": 0.25, "a": 0.5}
    path = tmp_path / "t.tsv"
    path.write_text(table.to_text(["a comment"]))
    assert read_table(path) == table
    with pytest.raises(MtnasError, match="no such trainings table"):
        read_table(tmp_path / "absent.tsv")


@pytest.mark.parametrize("method", ["trained", "pairs"])
def test_the_trained_methods_find_the_best_partition_of_a_table_through_the_registry(method: str) -> None:
    table = _table()
    space, store = table_space(table), TableStore(table)
    search = METHODS.get(method).search
    best = {frozenset(f) for f in FRIENDS}
    for hparams, branches in ((replace(space.search, method=method), None),
                              (replace(space.search, method=method, gain_per_cost=0.0), 2)):
        result = search(space, None, seed=0, hparams=hparams, device="cpu", store=store, branches=branches)
        assert {frozenset(g) for g in result.tree.groups_at(0)} == best, result.tree.describe()
        again = search(space, None, seed=4, hparams=hparams, device="cpu", store=store, branches=branches)
        assert again.tree == result.tree and again.spent == result.spent  # the table answers every seed alike
        assert result.weights == {}
    if method == "pairs":
        assert result.spent == pytest.approx(4 + 6) and result.notes == ()  # the singles and the pairs
    else:
        assert any("gradient agreement" in n for n in result.notes)
    shared = search(space, None, seed=0, hparams=hparams, device="cpu", store=store, branches=1)
    assert shared.tree == BranchingTree.all_shared(TASKS, 1)


def test_the_shipped_standley_tables_are_the_conversion_of_the_originals() -> None:
    originals = sorted(p.name for p in _standley.ORIGINAL.iterdir())
    assert len(originals) == 12 and "results_mean.txt" not in originals
    for setting in _standley.SETTINGS:
        shipped = _standley.FOLDER / f"{setting}.tsv"
        assert shipped.read_text() == _standley.converted_text(setting), setting
        table = read_table(shipped)
        assert len(table.networks(1.0, "val")) == len(table.networks(1.0, "test")) == 31
        early = table.networks(0.2, "val")
        if setting == "alt":  # results_alt_20.txt lacks one pair, read off its empty cells
            assert set(table.networks(1.0, "val")) - set(early) == {frozenset({"task_2", "task_3"})}
        else:
            assert len(early) == 31
    default = read_table(_standley.FOLDER / "default.tsv")
    assert default.find({"segment_semantic"}, 1.0, "val") == {"segment_semantic": 0.08039}  # line 2, not the half-size line 1


def test_the_table_regret_reproduces_the_published_figures() -> None:
    table = read_table(_standley.FOLDER / "large.tsv")
    judge = _tables.Judge(table, 5.0)
    rows = {b: _tables.baseline(b, table, judge) for b in _tables.BASELINES}
    assert rows["exhaustive"].at_k == (0.0,) * 5 and rows["exhaustive"].trainings == 31
    assert rows["esa"].at_k[2] == pytest.approx(10.91, abs=0.005) and rows["esa"].trainings == pytest.approx(6.2)
    assert rows["random"].at_k[2] == pytest.approx(9.16, abs=0.005)
    default = read_table(_standley.FOLDER / "default.tsv")
    hoa = _tables.baseline("hoa", default, _tables.Judge(default, 5.0))
    assert hoa.at_k[1] == pytest.approx(4.69, abs=0.005) and hoa.trainings == 15


def test_a_higher_is_better_table_is_searched_with_a_metric_of_its_direction() -> None:
    text = "# mtnas trainings table 1; better: higher\nnetwork\tfidelity\tsplit\ttask\tvalue\n"
    text += "".join(f"{n}\t1\tval\t{t}\t{v}\n" for n, t, v in (("a", "a", 0.5), ("b", "b", 0.6), ("a+b", "a", 0.7),
                                                               ("a+b", "b", 0.4)))
    table = TrainingTable.parse(text, "acc.tsv")
    space = table_space(table)
    assert [t.metrics for t in space.tasks] == [("accuracy",), ("accuracy",)]
    found = TableStore(table).answer(Unit(BranchingTree.all_shared(("a", "b"), 1), 5, 0), space)
    assert found.result.val == {"a": {"accuracy": 0.7}, "b": {"accuracy": 0.4}}
    with pytest.raises(MtnasError, match="higher-is-better"):
        TableStore(table).answer(Unit(BranchingTree.all_shared(("a",), 1), 5, 0), table_space(_table()))
