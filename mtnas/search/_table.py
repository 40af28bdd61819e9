"""Published trainings as evidence: a trainings table, and a store that answers units from it.

Task-grouping papers publish what they trained: subsets of tasks, each trained as one network,
with every task's value on validation and test, after the whole schedule and often after a
fraction of it (Standley, Zamir, Chen, Guibas, Malik and Savarese, "Which Tasks Should Be Learned
Together in Multi-task Learning?", ICML 2020, publish every subset of 5 Taskonomy tasks in four
settings). A **trainings table** holds such results in one format (tab-separated):

    # mtnas trainings table 1; better: lower
    network	fidelity	split	task	value
    depth_zbuffer+normal	1	val	normal	0.0997

one row per (network, fidelity, split, task): ``network`` the tasks it serves joined by ``+`` (any
order), ``fidelity`` the fraction of the whole schedule it was trained for, in (0, 1], ``split``
val or test. The first line says whether lower or higher values are better; later lines that start
with ``#`` and blank lines are comments. Every format error is one line naming the file, the line,
what was found and what was expected.

:class:`TableStore` answers units of evidence (``mtnas.train.Evidence``) from a table, so the
search methods run unchanged on what a paper measured (``Evidence`` asks a store that answers
units instead of training them):

* A unit's tree is a grouping split at the first layer, each group its own network: the all-shared
  tree is the one network of all its tasks, a tree over a subset (a pair) that subset's network.
  A tree whose groups share layers (a split below the first layer) has no row in a table: refused.
* Its fidelity is ``trained_epochs / epochs``, matched to a table fidelity within 1e-6. A network
  the table lacks at that fidelity is refused with one line naming it, the fidelity and the file.
* Its val metrics are the table's val values; each task's value stands for every metric its space
  names (``table_space`` names one, of the table's direction). Its test metrics are the table's
  test rows at that fidelity when every network of the tree has them, else empty: no split's value
  is passed off as another's (the search methods read val only). A second seed gets the same
  values: a table holds one training of each network.
* A table holds no network: no quantity is read off a unit's trained network (``Evidence.extra``
  is None, so the trained search goes without gradient agreement).
* Cost and ledger: a tree costs its number of networks (the all-shared tree: 1). What a search
  spent counts each distinct network it obtained once, at the furthest fidelity it read (one
  trained network serves every grouping that holds it, and a network read at a fifth and later in
  full was trained once, on to the end, as the evidence's ledger counts a resumed chain): every
  subset of 5 tasks at full fidelity is 31 trainings, at a fifth of the schedule 6.2, the 5 singles
  and 10 pairs 15.

``table_space`` builds the space a table is searched in: its tasks (with a metric of the table's
direction), a one-layer MLP that nothing trains whose only layer may branch (so only first-layer
groupings exist), ``proxy_epochs`` 5 and ``short_epochs`` 1 (the short trees of the trained
search are trained for a fifth of the schedule: fidelity 0.2).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtnas.core import ConfigError, MtnasError, is_name, short_repr
from mtnas.model import Cost
from mtnas.nn import get_metric
from mtnas.space import SearchSpace, space_from_dict
from mtnas.train import Trained, TreeResult, Unit
from mtnas.tree import BranchingTree

__all__ = ["TABLE_FORMAT", "TableStore", "TrainingTable", "read_table", "table_space"]

#: The format version a table's first line names.
TABLE_FORMAT = 1
COLUMNS = ("network", "fidelity", "split", "task", "value")
SPLITS = ("val", "test")
BETTER = ("lower", "higher")
#: Fidelities closer than this are one fidelity.
FIDELITY_TOLERANCE = 1e-6
#: The metric a table's value stands for in ``table_space``, by direction (only its direction is read).
TABLE_METRIC = {"lower": ("regression", 1, "abs_err"), "higher": ("classification", 2, "accuracy")}

Network = frozenset[str]
Key = tuple[Network, float, str]

_FIRST_LINE = re.compile(r"# mtnas trainings table (\S+); better: (.*)")


def _number(x: float) -> str:
    """The shortest text that reads back as ``x`` (``1`` for 1.0)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class TrainingTable:
    """A trainings table (module docstring), checked on construction.

    Attributes:
        tasks: every task, in the order first seen.
        better: ``lower`` or ``higher``: which values are better.
        values: (network, fidelity, split) -> {task: value}, a value for every task of the network.
        source: where it was read from, for messages (not compared: equal rows are equal tables).
    """

    tasks: tuple[str, ...]
    better: str
    values: Mapping[Key, Mapping[str, float]]
    source: str = field(default="trainings table", compare=False)

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ConfigError(f"{self.source}: better is {short_repr(self.better)}, expected lower or higher")
        if not self.values:
            raise ConfigError(f"{self.source}: no rows, expected at least one")
        odd = next((t for t in self.tasks if not is_name(t)), None)
        if odd is not None or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"{self.source}: tasks {short_repr(self.tasks)}, expected distinct task names "
                              f"(letters, digits, '_' or '-')")
        values = {}
        for (network, fidelity, split), row in self.values.items():
            where = f"{self.source}: network {self.name(network)} at fidelity {fidelity:g} ({split})"
            if not network or not network <= set(self.tasks):
                raise ConfigError(f"{where}: expected one or more of the tasks {', '.join(self.tasks)}")
            if not 0 < fidelity <= 1 or split not in SPLITS:
                raise ConfigError(f"{where}: expected a fidelity in (0, 1] and a split val or test")
            if set(row) != network or not all(math.isfinite(v) for v in row.values()):
                raise ConfigError(f"{where}: expected a finite value for each of its tasks, got {short_repr(dict(row))}")
            values[(frozenset(network), float(fidelity), split)] = {t: float(row[t]) for t in self._order(network)}
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "values", values)  # a copy: the caller's dict may change, this table not

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    def _order(self, network: Iterable[str]) -> list[str]:
        index = {t: i for i, t in enumerate(self.tasks)}
        return sorted(network, key=lambda t: index.get(t, len(index)))

    def name(self, network: Iterable[str]) -> str:
        """The network as the table writes it: its tasks in table order, joined by ``+``."""
        return "+".join(self._order(network))

    def fidelity(self, fraction: float) -> float:
        """The table's fidelity within ``FIDELITY_TOLERANCE`` of ``fraction``, else ``fraction``."""
        return next((f for f in self.fidelities() if abs(f - fraction) <= FIDELITY_TOLERANCE), fraction)

    def fidelities(self, split: str | None = None) -> tuple[float, ...]:
        """The fidelities the table holds (of ``split``), highest first."""
        return tuple(sorted({f for _, f, s in self.values if split in (None, s)}, reverse=True))

    def networks(self, fidelity: float = 1.0, split: str = "val") -> list[Network]:
        """The networks with rows at ``fidelity`` on ``split``, in the table's order."""
        fidelity = self.fidelity(fidelity)
        return [n for n, f, s in self.values if f == fidelity and s == split]

    def find(self, network: Iterable[str], fidelity: float, split: str) -> Mapping[str, float] | None:
        """{task: value} of ``network`` at ``fidelity`` (within ``FIDELITY_TOLERANCE``) on ``split``, or None."""
        return self.values.get((frozenset(network), self.fidelity(fidelity), split))

    def to_text(self, comments: Sequence[str] = ()) -> str:
        """The table in its file format, rows in this table's order; ``comments`` follow the first line."""
        lines = [f"# mtnas trainings table {TABLE_FORMAT}; better: {self.better}"]
        lines += [f"# {c}".rstrip() for c in comments]
        lines.append("\t".join(COLUMNS))
        for (network, fidelity, split), row in self.values.items():
            name = self.name(network)
            lines += ["\t".join((name, _number(fidelity), split, t, _number(v))) for t, v in row.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str, source: str = "trainings table") -> TrainingTable:
        """Read a table from its text; every format error is one ``ConfigError`` line naming
        ``source``, the line number, what was found and what was expected."""
        return _Parser(source).parse(text)


def read_table(path: str | Path) -> TrainingTable:
    """The trainings table in the file ``path`` (format errors name it and the line)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise MtnasError(f"{path}: no such trainings table") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}), expected a trainings table") from None
    except OSError as exc:
        raise MtnasError(f"{path}: cannot read the trainings table ({exc.strerror or exc})") from None
    return TrainingTable.parse(text, str(path))


class _Parser:
    """One pass over a table's lines (``TrainingTable.parse``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tasks: dict[str, None] = {}  # first-seen order
        self.rows: dict[Key, dict[str, float]] = {}
        self.first_line: dict[Key, int] = {}  # the line of each network's first row at a fidelity and split
        self.seen: dict[tuple[Key, str], int] = {}  # (key, task) -> its line
        self.fidelities: list[float] = []

    def error(self, line: int, found: str, expected: str) -> ConfigError:
        return ConfigError(f"{self.source}:{line}: found {found}, expected {expected}")

    def parse(self, text: str) -> TrainingTable:
        lines = [line.rstrip("\r") for line in text.split("\n")]
        better = self.first(lines[0])
        header = None
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip() or line.startswith("#"):
                continue
            if header is None:
                header = number
                if line.split("\t") != list(COLUMNS):
                    raise self.error(number, f"the column header {short_repr(line, 60)}",
                                     f"{chr(9).join(COLUMNS)!r} (tab-separated)")
                continue
            self.row(number, line)
        if not self.rows:
            raise self.error(len(lines), "no rows" if header else "no column header",
                             "the column header and one row per network, fidelity, split and task")
        for key, row in self.rows.items():
            network, fidelity, split = key
            missing = [t for t in self.tasks if t in network and t not in row]
            if missing:
                name = "+".join(t for t in self.tasks if t in network)
                raise self.error(self.first_line[key], f"network {name} at fidelity {fidelity:g} "
                                 f"({split}) without a value of task {missing[0]}",
                                 "a row for every task of the network at each fidelity and split it has")
        return TrainingTable(tuple(self.tasks), better, self.rows, self.source)

    def first(self, line: str) -> str:
        example = f"'# mtnas trainings table {TABLE_FORMAT}; better: lower' (or higher)"
        match = _FIRST_LINE.fullmatch(line.strip())
        if match is None:
            raise self.error(1, f"{short_repr(line, 60)}" if line.strip() else "an empty first line", example)
        version, better = match.groups()
        if version != str(TABLE_FORMAT):
            raise self.error(1, f"format version {short_repr(version)}", f"version {TABLE_FORMAT}, the one this mtnas reads")
        if better.strip() not in BETTER:
            raise self.error(1, f"better: {short_repr(better.strip())}", "better: lower or better: higher")
        return better.strip()

    def row(self, number: int, line: str) -> None:
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise self.error(number, f"{len(fields)} tab-separated field{'s' * (len(fields) != 1)}",
                             f"{len(COLUMNS)} ({', '.join(COLUMNS)})")
        name, fidelity_text, split, task, value_text = (f.strip() for f in fields)
        parts = name.split("+")
        odd = next((p for p in parts if not is_name(p)), None)
        if odd is not None or len(set(parts)) != len(parts):
            what = f"task name {short_repr(odd)}" if odd is not None else "a task twice"
            raise self.error(number, f"network {short_repr(name, 60)} with {what}",
                             "distinct task names (letters, digits, '_' or '-') joined by '+'")
        fidelity = self.fidelity(number, fidelity_text)
        if split not in SPLITS:
            raise self.error(number, f"split {short_repr(split)}", "val or test")
        if task not in parts:
            raise self.error(number, f"task {short_repr(task)} in network {name}", f"one of its tasks ({', '.join(parts)})")
        try:
            value = float(value_text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise self.error(number, f"value {short_repr(value_text)}", "a finite number")
        key = (frozenset(parts), fidelity, split)
        if (key, task) in self.seen:
            raise self.error(number, f"a second value of task {task} in network {name} at fidelity {fidelity:g} ({split})",
                             f"one (the first is on line {self.seen[(key, task)]})")
        self.seen[(key, task)] = number
        self.first_line.setdefault(key, number)
        self.tasks.update(dict.fromkeys(parts))
        self.rows.setdefault(key, {})[task] = value

    def fidelity(self, number: int, text: str) -> float:
        try:
            fidelity = float(text)
        except ValueError:
            fidelity = math.nan
        if not 0 < fidelity <= 1:  # NaN fails too
            raise self.error(number, f"fidelity {short_repr(text)}", "a number in (0, 1]: the fraction of the schedule trained")
        close = next((f for f in self.fidelities if abs(f - fidelity) <= FIDELITY_TOLERANCE), None)
        if close is None:
            self.fidelities.append(fidelity)
        return fidelity if close is None else close


class TableStore:
    """Units of evidence answered from a trainings table (module docstring); trains nothing.

    Pass it as the ``store`` of a search on ``table_space(table)``: ``Evidence`` asks it for
    every unit (``mtnas.train.AnsweringStore``).
    """

    def __init__(self, table: TrainingTable) -> None:
        self.table = table
        self.where = f"trainings table {table.source}"

    @property
    def fractions(self) -> tuple[float, ...]:
        """The fidelities of the table's validation rows, lowest first."""
        return tuple(sorted(self.table.fidelities("val")))

    def networks(self, tree: BranchingTree) -> tuple[Network, ...]:
        """The networks of a tree split at the first layer (one per group); refused for any other."""
        first = tree.partitions[0]
        if any(p != first for p in tree.partitions[1:]):
            raise MtnasError(f"{self.where} holds networks that share nothing; tree {tree.describe()!r} shares layers "
                             f"between groups (it splits at layer {tree.first_split_layer}): only trees split at the "
                             "first layer are answered")
        unknown = [t for t in tree.tasks if t not in self.table.tasks]
        if unknown:
            raise MtnasError(f"{self.where} has no task {unknown[0]!r}; its tasks: {', '.join(self.table.tasks)}")
        return tuple(frozenset(g) for g in first)

    def answer(self, unit: Unit, space: SearchSpace) -> Trained:
        fidelity = unit.trained_epochs / unit.epochs
        val: dict[str, float] = {}
        test: dict[str, float] | None = {}
        for network in self.networks(unit.tree):
            found = self.table.find(network, fidelity, "val")
            if found is None:
                raise MtnasError(self._missing(network, fidelity))
            val.update(found)
            on_test = self.table.find(network, fidelity, "test")
            test = None if test is None or on_test is None else {**test, **on_test}
        tasks = unit.tree.tasks
        result = TreeResult(tree=unit.tree, cost=Cost(0, 0),  # no model: its size is unknown (cost: ``relative_cost``)
                            val={t: dict.fromkeys(self._metrics(space, t), val[t]) for t in tasks},
                            test={t: dict.fromkeys(self._metrics(space, t), test[t]) for t in tasks} if test else {},
                            seconds=0.0)
        return Trained(unit, result)

    def _missing(self, network: Network, fidelity: float) -> str:
        has = [f for f in self.table.fidelities("val") if self.table.find(network, f, "val") is not None]
        held = f"it has that network at fidelity {', '.join(f'{f:g}' for f in has)}" if has else "it has no val rows of that network"
        return (f"{self.where} has no val rows of network {self.table.name(network)} at fidelity {fidelity:g} ({held}); "
                "a method that needs it cannot run on this table")

    def _metrics(self, space: SearchSpace, task: str) -> tuple[str, ...]:
        config = space.task(task)
        for m in config.metrics:
            if get_metric(m, config.kind).higher_is_better != self.table.higher_is_better:
                raise MtnasError(f"{self.where}: its values are {self.table.better}-is-better, and the space's metric "
                                 f"{m!r} of task {task!r} is not; search it in table_space(table)")
        return config.metrics

    def relative_cost(self, tree: BranchingTree) -> float:
        """The tree's number of networks (the all-shared tree: 1)."""
        return float(len(self.networks(tree)))

    def spent(self, units: Sequence[Unit]) -> float:
        """Each distinct network of ``units`` once, at the furthest of its trained epochs: a network
        read at a fraction and later at a larger one was trained once, on to the larger (as the
        evidence's ledger counts a tree's resumed chain)."""
        seen: dict[Network, int] = {}
        for u in units:
            for network in self.networks(u.tree):
                seen[network] = max(seen.get(network, 0), u.trained_epochs)
        return float(sum(seen.values()))


def table_space(table: TrainingTable, name: str | None = None) -> SearchSpace:
    """The space a table is searched in (module docstring); ``name`` defaults to the file's stem."""
    kind, outputs, metric = TABLE_METRIC[table.better]
    tasks = [{"name": t, "kind": kind, "num_outputs": outputs, "head": "linear",
              "loss": "mse" if kind == "regression" else "cross_entropy", "metrics": [metric]} for t in table.tasks]
    data = {
        "name": name if name is not None else Path(table.source).stem,
        "description": f"the networks of {table.source}, answered from the table (nothing trains)",
        "dataset": {"name": "trainings_table"},  # never built: the table answers every unit
        "backbone": {"name": "mlp", "layers": [{"width": 1}]},
        "tasks": tasks,
        "routing": {"max_branches": len(table.tasks), "branching_layers": [0]},
        "training": {"epochs": 5},
        "search": {"proxy_epochs": 5, "short_epochs": 1},
        "input_shape": [1],
    }
    return space_from_dict(data, source=f"table_space({table.source})")
