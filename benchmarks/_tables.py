"""Regret on published trainings: what each method's choice loses on a trainings table's test rows.

A trainings table (``mtnas.search._table``) holds networks a paper trained, each serving a subset
of the tasks: the four settings of Standley et al. (ICML 2020; ``benchmarks/data/standley/``,
``--tables standley``) or a user's own (``--table FILE``). For each table and each k = 1..T (at
most k networks), each method chooses a partition of the tasks (each group its own network) from
the val rows, at the fidelities it asks for, and is judged on the test rows at full fidelity:

* **regret at k**: the chosen partition's test value (the sum over tasks of each task's test value
  in its group's network) against the best partition of at most k groups, in percent of the best
  one's value; where higher is better and some values are not positive, in the table's own units.
* **trade-off**: the default search's score: the mean over tasks of each task's relative change (%)
  against the best test value any full network of the table reached on it, less ``gain_per_cost``
  (the table space's default, 5) points per network beyond the first; the regret in score points
  against the best partition's score (any number of networks).
* **trainings**: what the choice read, in networks trained for the whole schedule (one at a
  fraction f of it counts f; each distinct network once); for our methods, the most any of their
  runs read.

On the same footing:

* ``exhaustive``: every subset at full fidelity: the best partition by val (the sum of values at
  each k; the score, its references from val, for the trade-off).
* ``hoa``: Standley et al.'s higher-order approximation: the singles and pairs (val); a task's
  value in a group of three or more is the mean of its values in the group's pairs.
* ``esa``: every subset after a fifth of the schedule (val, fidelity 0.2), chosen as exhaustive.
* ``random``: the mean over every partition of at most k groups (of any number, for the trade-off).
* the registry's methods that read nothing but units of evidence (``units_only``: ``trained``,
  ``pairs``), run on the table's store (``TableStore``): at each k with ``branches`` k and
  ``gain_per_cost`` 0, and for the trade-off with the space's defaults. The table answers every
  seed alike, so one run each. The others (``tag``, the supernet methods) need a trained network
  for every proposal: one line each says they cannot run on a table.

    python -m benchmarks.regret --tables standley [--methods trained,pairs,tag,dmtg]
    python -m benchmarks.regret --table FILE [--table FILE ...]

One line per method last, ``regret [METHOD] on tables: mean X.XX% (worst Y.YY% at TABLE k=K),
trade-off Z.ZZ, N.N trainings``: the mean over the tables (those reported in percent) and k = 2..T
(at k = 1 the one partition is every method's), the trade-off regret and trainings averaged over
the tables; the default (``trained``) last.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks._methods import method_settings, unknown_methods
from mtnas.core import MtnasError, first_line
from mtnas.search import METHODS, PROPOSERS, TableStore, TrainingTable, all_partitions, read_table, table_space
from mtnas.space import trade_off_score

STANDLEY = Path(__file__).resolve().parent / "data" / "standley"
STANDLEY_SETTINGS = ("default", "large", "small_data", "alt")
DEFAULT_METHODS = ("trained", "pairs", "tag", "dmtg")
BASELINES = ("exhaustive", "hoa", "esa", "random")
EARLY = 0.2  # the fidelity of ESA's tables

Network = frozenset[str]
Partition = tuple[Network, ...]
Rows = Mapping[Network, Mapping[str, float]]  # each network's value of each of its tasks


@dataclass(frozen=True)
class Row:
    """One method on one table: regret at each k (None: no answer), at the trade-off, trainings read."""

    method: str
    at_k: tuple[float | None, ...]
    trade_off: float | None
    trainings: float | None
    notes: tuple[str, ...] = ()


def _rows(table: TrainingTable, fidelity: float, split: str) -> dict[Network, dict[str, float]]:
    return {n: dict(table.find(n, fidelity, split) or {}) for n in table.networks(fidelity, split)}


def _hoa(val: Rows) -> dict[Network, dict[str, float]]:
    """Standley et al.'s higher-order approximation from the singles and pairs of ``val``."""
    pairs = {n: v for n, v in val.items() if len(n) == 2}
    out = {n: dict(v) for n, v in val.items() if len(n) <= 2}
    tasks = sorted({t for n in val for t in n})
    for size in range(3, len(tasks) + 1):
        for group in map(frozenset, itertools.combinations(tasks, size)):
            inside = [p for p in pairs if p <= group]
            est = {t: statistics.mean(pairs[p][t] for p in inside if t in p) for t in group
                   if any(t in p for p in inside)}
            if len(est) == len(group):
                out[group] = est
    return out


def _values(rows: Rows, partition: Partition) -> dict[str, float] | None:
    """Each task's value in its group's network, or None when ``rows`` lack a group."""
    if any(g not in rows for g in partition):
        return None
    return {t: rows[g][t] for g in partition for t in g}


class Judge:
    """A table's test rows at full fidelity: what any partition is worth, and the best ones."""

    def __init__(self, table: TrainingTable, gain: float) -> None:
        self.table, self.gain = table, gain
        self.higher = table.higher_is_better
        self.test = _rows(table, 1.0, "test")
        self.tasks = table.tasks
        self.by_k = {k: [tuple(map(frozenset, p)) for n in range(1, k + 1) for p in all_partitions(self.tasks, n)]
                     for k in range(1, len(self.tasks) + 1)}
        self.judged = {k: [p for p in ps if _values(self.test, p) is not None] for k, ps in self.by_k.items()}
        if not self.judged[len(self.tasks)]:
            raise MtnasError(f"{table.source}: no partition of its tasks has test rows at fidelity 1 for every group; "
                             "the regret is judged on them")
        self.refs = _refs(self.test, self.tasks, self.higher)
        self.percent = not self.higher or all(v > 0 for r in self.test.values() for v in r.values())
        self.best = {k: self.choose(self.test, k) for k in self.by_k}
        self.best_score = max(self.score(self.test, p, self.refs) for p in self.judged[len(self.tasks)])

    def total(self, rows: Rows, partition: Partition) -> float | None:
        values = _values(rows, partition)
        return None if values is None else sum(values.values())

    def score(self, rows: Rows, partition: Partition, refs: Mapping[str, float]) -> float:
        values = _values(rows, partition)
        sign = 1.0 if self.higher else -1.0
        terms = [100.0 * sign * (values[t] - refs[t]) / (abs(refs[t]) or 1e-12) for t in self.tasks]
        return trade_off_score(statistics.mean(terms), len(partition), self.gain)

    def choose(self, rows: Rows, k: int) -> Partition | None:
        """The partition of at most k groups best by the sum of ``rows``' values (None: none valued)."""
        valued = [(self.total(rows, p), p) for p in self.by_k[k] if _values(rows, p) is not None]
        if not valued:
            return None
        pick = max if self.higher else min
        return pick(valued, key=lambda x: x[0])[1]

    def choose_trade_off(self, rows: Rows) -> Partition | None:
        """The partition best by the score, each task's reference the best value in ``rows``."""
        refs = _refs(rows, self.tasks, self.higher)
        valued = [p for p in self.by_k[len(self.tasks)] if _values(rows, p) is not None]
        return max(valued, key=lambda p: self.score(rows, p, refs)) if valued and len(refs) == len(self.tasks) else None

    def regret(self, partition: Partition | None, k: int) -> float | None:
        chosen = None if partition is None else self.total(self.test, partition)
        if chosen is None or len(partition) > k:
            return None
        best = self.total(self.test, self.best[k])
        lost = best - chosen if self.higher else chosen - best
        return 100.0 * lost / abs(best) if self.percent else lost

    def trade_off_regret(self, partition: Partition | None) -> float | None:
        if partition is None or _values(self.test, partition) is None:
            return None
        return self.best_score - self.score(self.test, partition, self.refs)

    def random(self) -> Row:
        at_k = tuple(statistics.mean(self.regret(p, k) for p in self.judged[k]) for k in self.by_k)
        trade = statistics.mean(self.trade_off_regret(p) for p in self.judged[len(self.tasks)])
        return Row("random", at_k, trade, 0.0)


def _refs(rows: Rows, tasks: Sequence[str], higher: bool) -> dict[str, float]:
    pick = max if higher else min
    seen = {t: [v[t] for v in rows.values() if t in v] for t in tasks}
    return {t: pick(vs) for t, vs in seen.items() if vs}


def baseline(name: str, table: TrainingTable, judge: Judge) -> Row:
    """One of ``BASELINES`` on ``table`` (module docstring)."""
    if name == "random":
        return judge.random()
    val = _rows(table, 1.0, "val")
    rows: Rows
    if name == "exhaustive":
        rows, trainings = val, float(len(val))
    elif name == "hoa":
        rows, trainings = _hoa(val), float(sum(len(n) <= 2 for n in val))
    else:
        rows = _rows(table, EARLY, "val")
        trainings = EARLY * len(rows)
    if not rows:
        note = f"the table has no val rows at fidelity {EARLY:g}"
        return Row(name, (None,) * len(judge.by_k), None, None, (note,))
    at_k = tuple(judge.regret(judge.choose(rows, k), k) for k in judge.by_k)
    return Row(name, at_k, judge.trade_off_regret(judge.choose_trade_off(rows)), trainings)


def searched(name: str, table: TrainingTable, judge: Judge) -> Row:
    """A registry method run on the table's store at each k (gain 0) and at the trade-off."""
    space, store = table_space(table), TableStore(table)
    method_name, settings = method_settings(name)
    method = METHODS.get(method_name)
    notes: list[str] = []
    refused: dict[str, list[str]] = {}  # reason -> the runs it stopped
    spent: list[float] = []

    def run(k: int | None) -> Partition | None:
        hparams = replace(space.search, method=method_name, **settings)
        if k is not None:
            hparams = replace(hparams, gain_per_cost=0.0)
        try:
            result = method.search(space, None, seed=0, hparams=hparams, device="cpu", branches=k, progress=False,
                                   eval_seed=None, store=store)
        except MtnasError as exc:
            refused.setdefault(first_line(exc), []).append("trade-off" if k is None else f"k<={k}")
            return None
        notes.extend(n for n in result.notes if n not in notes)
        spent.append(result.spent or 0.0)
        return tuple(frozenset(g) for g in result.tree.groups_at(0))

    at_k = tuple(judge.regret(run(k), k) for k in judge.by_k)
    trade = judge.trade_off_regret(run(None))
    notes += [f"{', '.join(runs)}: {reason}" for reason, runs in refused.items()]
    return Row(name, at_k, trade, max(spent) if spent else None, tuple(notes))


def _cell(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print_table(table: TrainingTable, judge: Judge, rows: Sequence[Row]) -> None:
    unit = "% of the best partition's test value" if judge.percent else "the table's units"
    print(f"\n== {Path(table.source).name}: {len(table.tasks)} tasks ({', '.join(table.tasks)}), {table.better} is better; "
          f"regret at k in {unit}, trade-off in score points (gain {judge.gain:g} per extra network)")
    best = ", ".join(f"k<={k} {judge.total(judge.test, p):.4g}" for k, p in judge.best.items())
    print(f"best test value (sum over tasks): {best}")
    headers = ["method"] + [f"k<={k}" for k in judge.by_k] + ["trade-off", "trainings"]
    cells = [[r.method] + [_cell(x) for x in r.at_k] + [_cell(r.trade_off), _cell(r.trainings, 1)] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    for line in [headers, ["-" * w for w in widths]] + cells:
        print("  ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(line, widths))))
    for r in rows:
        for note in r.notes:
            print(f"  {r.method}: {note}")


def _summary(name: str, results: Sequence[tuple[TrainingTable, Judge, Row]]) -> str:
    points = [(r.at_k[k - 1], t.source, k) for t, j, r in results if j.percent for k in range(2, len(t.tasks) + 1)]
    known = [(x, s, k) for x, s, k in points if x is not None]
    trade = [r.trade_off for _, _, r in results if r.trade_off is not None]
    spent = [r.trainings for _, _, r in results if r.trainings is not None]
    if not known:
        return f"regret [{name}] on tables: no answer"
    worst = max(known, key=lambda p: p[0])
    missing = f", {len(points) - len(known)} without an answer" if len(known) < len(points) else ""
    return (f"regret [{name}] on tables: mean {statistics.mean(x for x, _, _ in known):.2f}% "
            f"(worst {worst[0]:.2f}% at {Path(worst[1]).stem} k={worst[2]}{missing}), "
            f"trade-off {statistics.mean(trade) if trade else float('nan'):.2f}, "
            f"{statistics.mean(spent) if spent else float('nan'):.1f} trainings")


def _tables(args: argparse.Namespace) -> list[TrainingTable]:
    paths = [Path(p) for p in args.table or []]
    if args.tables == "standley":
        paths += [STANDLEY / f"{s}.tsv" for s in STANDLEY_SETTINGS]
    elif args.tables is not None:
        raise MtnasError(f"--tables {args.tables!r}: the shipped tables are 'standley'")
    if not paths:
        raise MtnasError("give --table FILE (repeatable) or --tables standley")
    return [read_table(p) for p in paths]


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except MtnasError as exc:  # a user's table or option: one line, no traceback
        print(f"benchmarks.regret: error: {first_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None


def _main(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.regret", description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="append", metavar="FILE", help="a trainings table (repeatable)")
    parser.add_argument("--tables", choices=("standley",), help="the shipped tables: Standley et al.'s 4 settings")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated search methods")
    args = parser.parse_args(argv)
    names = [m for m in args.methods.split(",") if m]
    bad = unknown_methods(names)
    if bad:
        parser.error(f"unknown method(s) {', '.join(bad)}: NAME[@BUDGET][:-P|:+P...] of {', '.join(METHODS.names())}"
                     f" (P a proposer: {', '.join(PROPOSERS.names())})")
    runnable = [m for m in names if getattr(METHODS.get(method_settings(m)[0]), "units_only", False)]
    tables = [(table, Judge(table, table_space(table).search.gain_per_cost)) for table in _tables(args)]
    print("Regret of each method's partition on the test rows (fidelity 1) against the best partition of at most k "
          "networks; trade-off: regret in the default search's score; trainings: networks trained for the whole "
          "schedule the choice read (one at a fraction f counts f, each distinct network once; for a searched "
          "method, the most any of its runs read)")
    for name in names:
        if name not in runnable:
            kind = "trains a routing supernet and reads the tree off it" \
                if METHODS.get(method_settings(name)[0]).kind == "supernet" \
                else "measures its signal while training a network"
            print(f"{name}: cannot run on a trainings table: it {kind}, and a table holds no network")
    order = [m for m in runnable if m != "trained"] + [m for m in runnable if m == "trained"]
    results: dict[str, list[tuple[TrainingTable, Judge, Row]]] = {m: [] for m in (*BASELINES, *order)}
    for table, judge in tables:
        rows = [baseline(b, table, judge) for b in BASELINES] + [searched(m, table, judge) for m in order]
        _print_table(table, judge, rows)
        for row in rows:
            results[row.method].append((table, judge, row))
    print()
    for name, found in results.items():
        print(_summary(name, found))

