"""Trained evidence: units of training, keyed by their content, shared through an evidence store.

A :class:`Unit` is one training: a tree from fresh weights (seeded) for a number of epochs on a
space's data, exactly as ``mtnas.train.train_tree`` trains it (its cosine schedule over those
epochs). Its key digests everything the result depends on: how the space trains
(``SearchSpace.unit_hash``: backbone, tasks, losses, balancing, optimiser, but not
``training.epochs``, which the unit names itself), the dataset's content
(``mtnas.data.data_digest``), mtnas's version, the tree, the epochs and the seed. So a search on a
space and a study's trial on its proxy space (``mtnas.train.proxy_space``) ask for one unit when
they ask for one training. A search asks :class:`Evidence` for the units it needs (``obtain``);
each is read from the store when some process trained it, trained here when this process claims
it, or waited for while another process trains it (``mtnas.train._store``), so the processes of a
study split a search's trainings and none trains what another did.

The weights of every unit trained here go to the store with its result, and none stay in memory:
``Evidence.weights`` reads them back (or trains the unit again, the same seed giving the same
network, where the store cannot keep them). A quantity computed from a unit's trained network
(the gradient agreement of the all-shared tree, ``mtnas.search._gradients``) is added to the
stored evidence when first asked for (``Evidence.extra``): an entry of its own, named by the
unit's key and the quantity's name, computed once from the unit's stored weights by whichever
process claims it. So a unit is trained once whether or not anyone reads such a quantity off it,
and this module need not know how it is computed.

Units of one tree, schedule (``epochs``) and seed are one *chain* at several stops: the rungs of a
successive-halving search, which trains every candidate for the first part of its schedule and
continues only the survivors. With its weights, the store keeps each unit's checkpoint (the rest
of its training's state at its stop: optimizer, schedule, RNG states, ``mtnas.train.Checkpoint``),
and a unit whose chain has a checkpoint at an earlier stop resumes from the latest one instead of
training from scratch, with the same result (``mtnas.train.train_trees``). A damaged checkpoint,
or one that is not of the chain, is named in a line and not used. A unit trained to the end of
its schedule keeps its weights only: no later stop can resume from it.

Every unit obtained is also counted in a ledger (``Evidence.spent``): per chain, its largest stop
obtained times its tree's cost relative to the all-shared tree (``search.cost_metric``,
``mtnas.model.relative_cost``), whether this process trained it, resumed it or read it, so what a
search costs does not depend on what a cache held, and a survivor's rungs cost its last stop,
not the sum of its rungs.

A store may also *answer* units instead of holding trained ones (an :class:`AnsweringStore`: a
table of published trainings, ``mtnas.search._table``). ``Evidence`` then asks it for every unit,
trains nothing, needs no dataset, and keeps its ledger by the store's rules (what one of its
trainings is, and what a tree costs), so every search method runs on it unchanged: it only ever
sees units and their results.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from mtnas.core import DamagedEntryWarning, MtnasError, __version__, first_line
from mtnas.data import DatasetBundle, TaskData, data_digest
from mtnas.model import BranchedNet, relative_cost
from mtnas.space import SearchSpace
from mtnas.train._baselines import Baselines, cache_dir, compute_baselines
from mtnas.train._batched import subset_space, train_trees, tree_resume_problem
from mtnas.train._cached import checked_result
from mtnas.train._fixed_tree import TreeResult
from mtnas.train._resume import Checkpoint
from mtnas.train._store import EvidenceStore, LocalStore
from mtnas.tree import BranchingTree

__all__ = ["EVIDENCE_FORMAT", "AnsweringStore", "Evidence", "Trained", "Unit", "default_store"]

#: Changes whenever an entry's meaning changes: older entries are then not read (3: a unit's key no
#: longer holds ``training.epochs`` nor a probe; extras are entries of their own).
EVIDENCE_FORMAT = 3
#: Seconds between the lines of a process waiting for units another process trains.
WAIT_LINE_EVERY = 30.0
#: What checking a stored entry raises when it is not sound.
_UNSOUND = (MtnasError, KeyError, TypeError, ValueError, AttributeError)
#: What an extra is computed by: the unit's trained network (eval mode is its own business), the
#: training split of its tasks, and the space of its tree.
Extra = Callable[[BranchedNet, TaskData, SearchSpace], np.ndarray]
Value = TypeVar("Value")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}" if isinstance(exc, (KeyError, TypeError)) else first_line(exc)


@dataclass(frozen=True)
class Unit:
    """One training: ``tree`` (over all or some of the space's tasks) from fresh weights seeded by
    ``seed``, with the schedule of ``epochs`` epochs, trained for all of them or for the first
    ``stop``. Units of one ``chain`` differ only in their stop: each is the first part of the next."""

    tree: BranchingTree
    epochs: int
    seed: int
    stop: int | None = None

    @property
    def trained_epochs(self) -> int:
        return min(self.stop or self.epochs, self.epochs)

    @property
    def chain(self) -> tuple[str, int, int]:
        """The training this unit is a stop of: its tree, schedule and seed."""
        return self.tree.key, self.epochs, self.seed

    def describe(self) -> str:
        part = f"{self.trained_epochs} of {self.epochs}" if self.trained_epochs < self.epochs else f"{self.epochs}"
        return f"{self.tree.describe()} ({part} epochs, seed {self.seed})"


@dataclass(frozen=True)
class Trained:
    """A unit's result: per-task metrics on val and test, and the training's seconds."""

    unit: Unit
    result: TreeResult

    def to_entry(self) -> dict:
        return {"result": self.result.to_dict()}

    @classmethod
    def from_entry(cls, unit: Unit, entry: dict, space: SearchSpace) -> Trained | None:
        """The unit's result from a store entry; None when the entry does not hold a sound result
        of this unit (another tree or task set, a missing metric, a number that is not finite or
        out of its metric's range): such a unit is trained again."""
        try:
            return cls.checked(unit, entry, space)
        except _UNSOUND:
            return None

    @classmethod
    def checked(cls, unit: Unit, entry: dict, space: SearchSpace) -> Trained:
        """:meth:`from_entry`, raising (one of ``_UNSOUND``) with the reason instead of None."""
        result = checked_result(entry["result"], space, tasks=unit.tree.tasks)
        if result.tree != unit.tree:
            raise ValueError(f"it holds the tree {result.tree.describe()!r}, not the unit's")
        return cls(unit, result)


def _checked_extra(entry: Mapping[str, Any], name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """A stored extra's value; raises (one of ``_UNSOUND``) with the reason when it is not sound."""
    if entry.get("extra") != name:
        raise ValueError(f"it holds {entry.get('extra')!r}, not {name!r}")
    value = np.asarray(entry["value"], dtype=float)
    if value.shape != tuple(entry["shape"]) or (shape is not None and value.shape != shape):
        raise ValueError(f"its {name} is of shape {value.shape}, expected {shape or tuple(entry['shape'])}")
    if not np.isfinite(value).all():
        raise ValueError(f"its {name} is not finite")
    return value


@runtime_checkable
class AnsweringStore(Protocol):
    """A store that answers units from trainings it holds (a table of published ones) and trains
    none: ``Evidence`` asks it for every unit, and keeps its ledger by the store's rules."""

    where: str  # what the store is, for messages

    def answer(self, unit: Unit, space: SearchSpace) -> Trained:
        """The unit's result; an ``MtnasError`` of one line when the store cannot answer it (it
        holds no network: ``Evidence.extra`` of its units is None)."""

    def relative_cost(self, tree: BranchingTree) -> float:
        """The tree's cost relative to the all-shared tree."""

    def spent(self, units: Sequence[Unit]) -> float:
        """What obtaining ``units`` cost, in epochs of the all-shared tree."""

    @property
    def fractions(self) -> tuple[float, ...]:
        """The fractions of a schedule it holds trainings at (a unit's ``trained_epochs / epochs``)."""


def default_store() -> LocalStore:
    """This machine's evidence folder: ``$MTNAS_CACHE_DIR/evidence``."""
    return LocalStore(cache_dir() / "evidence")


class Evidence:
    """The units of one space and dataset: obtained once, from the store or trained here.

    Args:
        space: a resolved search space (its ``training`` section trains every unit; a unit's
            ``epochs`` replaces ``training.epochs``, which its key leaves out).
        bundle: its dataset (units train on ``train``; metrics are read on ``val`` and ``test``);
            None when the store answers units (:class:`AnsweringStore`).
        store: where units are kept and claimed (default: this machine's evidence folder), or a
            store that answers them.
        progress: training progress, and while another process trains a unit this one needs, a
            line every ``WAIT_LINE_EVERY`` seconds saying which, whose claim, and for how long.
        poll: seconds between looks while another process trains a unit this one needs.
    """

    def __init__(self, space: SearchSpace, bundle: DatasetBundle | None, *, device: torch.device | str = "cpu",
                 store: EvidenceStore | AnsweringStore | None = None, progress: bool = False,
                 poll: float = 0.5) -> None:
        self.space, self.bundle = space, bundle
        self.device = torch.device(device)
        self.store = store if store is not None else default_store()
        self.answering = self.store if isinstance(self.store, AnsweringStore) else None
        if bundle is None and self.answering is None:
            raise MtnasError(f"evidence of space {space.name or 'space'!r} is trained on its dataset, and none was "
                             "given; pass the dataset, or a store that answers units (a trainings table)")
        self.progress, self.poll = progress, poll
        self.wait_line_every, self._said = WAIT_LINE_EVERY, 0.0
        self._prefix = json.dumps({"format": EVIDENCE_FORMAT, "mtnas": __version__, "space": space.unit_hash,
                                   "data": None if bundle is None else data_digest(bundle)}, sort_keys=True)
        self._known: dict[str, Trained] = {}
        self._extras: dict[str, np.ndarray] = {}
        self._costs: dict[str, float] = {}
        self.order: list[Trained] = []  # every unit obtained, in the order first obtained
        self.trained = 0  # units this object trained (not read from the store)
        self.resumed = 0  # of those, units resumed from a stored checkpoint of their chain
        self.seconds = 0.0  # their training time

    def cost(self, tree: BranchingTree) -> float:
        """The tree's cost (``search.cost_metric``) relative to the all-shared tree over every task
        of the space (``mtnas.model.relative_cost``: a tree over fewer tasks, as a pair's network,
        costs a little less than 1); a store that answers units says what its trees cost."""
        if self.answering is not None:
            return self.answering.relative_cost(tree)
        if tree.key not in self._costs:
            self._costs[tree.key] = relative_cost(tree, self.space, self.space.search.cost_metric)
        return self._costs[tree.key]

    @property
    def spent(self) -> float:
        """The ledger: every chain of units obtained so far (``Unit.chain``: a tree, schedule and
        seed) once, its largest stop obtained times its relative cost, in epochs of the all-shared
        tree (divide by ``SearchSpace.proxy_epochs`` for trainings of it at the search budget): a
        unit resumed from an earlier stop's checkpoint costs what training it straight does, and
        its earlier stops nothing more. A store that answers units keeps this ledger by its own
        rules."""
        if self.answering is not None:
            return self.answering.spent([f.unit for f in self.order])
        chains: dict[tuple[str, int, int], Unit] = {}
        for f in self.order:
            if f.unit.chain not in chains or f.unit.trained_epochs > chains[f.unit.chain].trained_epochs:
                chains[f.unit.chain] = f.unit
        return sum(u.trained_epochs * self.cost(u.tree) for u in chains.values())

    @property
    def fractions(self) -> tuple[float, ...] | None:
        """The fractions of a schedule units can stop at: those of a store that answers units, None
        (any) for evidence that trains."""
        return None if self.answering is None else self.answering.fractions

    def key(self, unit: Unit) -> str:
        spec = json.dumps({"tree": unit.tree.to_dict(), "epochs": unit.epochs, "seed": unit.seed,
                           "stop": unit.trained_epochs}, sort_keys=True)
        return hashlib.sha256(f"{self._prefix}|{spec}".encode()).hexdigest()

    def obtain(self, units: Sequence[Unit]) -> list[Trained]:
        """Every unit's result, in ``units`` order: remembered, read from the store, trained here
        (those this process claims, half of the missing ones at a time so that other processes
        needing them take the rest), or waited for while another process trains it."""
        keys = [self.key(u) for u in units]
        if self.answering is not None:  # nothing to train, claim or wait for
            for k, u in zip(keys, units):
                if k not in self._known:
                    self._remember(k, self.answering.answer(u, self.space))
            return [self._known[k] for k in keys]
        pending = {k: u for k, u in zip(keys, units) if not self._lookup(k, u)}
        since = None
        while pending:
            share = max(1, math.ceil(len(pending) / 2))
            mine = []
            for k, u in list(pending.items()):
                if len(mine) < share and self.store.claim(k):
                    mine.append((k, u))
            if mine:
                self._train(mine)
                since = None
            else:  # every missing unit is being trained by another process
                k, u = next(iter(pending.items()))
                more = f"; {len(pending) - 1} more units trained by other processes" if len(pending) > 1 else ""
                since = self._wait(since, f"unit {k[:12]} ({u.describe()})", k, more)
            pending = {k: u for k, u in pending.items() if not self._lookup(k, u)}
        return [self._known[k] for k in keys]

    def _wait(self, since: float | None, what: str, key: str, more: str = "") -> float:
        """Sleep one poll while another process trains ``what``; with ``progress``, a line every
        ``wait_line_every`` seconds says what this process waits for, whose claim, and how long.
        Returns when the wait began."""
        now = time.monotonic()
        if since is None:
            since, self._said = now, now
        elif self.progress and now - self._said >= self.wait_line_every:
            self._said = now
            print(f"waiting for {what} trained by {self.store.holder(key) or 'another process'} for "
                  f"{now - since:,.0f} s{more}", file=sys.stderr, flush=True)
        time.sleep(self.poll)
        return since

    def _lookup(self, key: str, unit: Unit) -> bool:
        if key in self._known:
            return True
        entry = self.store.get(key)
        if entry is None:
            return False
        try:
            found = Trained.checked(unit, entry, self.space)
        except _UNSOUND as exc:  # stored whole but not sound (edited, or written by a broken writer)
            self.store.reject(key, entry, _reason(exc))
            return False
        self._remember(key, found)
        return True

    def _remember(self, key: str, found: Trained) -> None:
        self._known[key] = found
        self.order.append(found)

    def _unit_space(self, unit: Unit) -> SearchSpace:
        """The space a unit trains in: the space with the unit's epochs."""
        return replace(self.space, training=replace(self.space.training, epochs=unit.epochs))

    def _train(self, claimed: list[tuple[str, Unit]]) -> None:
        """Train the claimed units, stacked by (epochs, stop, seed, the stop they resume from), each
        from the latest checkpoint of its chain in the store if any, and store each result with its
        checkpoint (kept by the store, not here)."""
        starts = {k: self._resume_point(u) for k, u in claimed}
        groups: dict[tuple[int, int, int, int], list[tuple[str, Unit]]] = {}
        for k, u in claimed:
            point = starts[k]
            groups.setdefault((u.epochs, u.trained_epochs, u.seed, point.epoch if point else 0), []).append((k, u))
        for members in groups.values():
            held = {k for k, _ in members}
            try:
                first = members[0][1]
                start = time.perf_counter()
                outs = train_trees(self._unit_space(first), self.bundle, [u.tree for _, u in members],
                                   device=self.device, seed=first.seed, progress=self.progress,
                                   stop=first.trained_epochs, resume=[starts[k] for k, _ in members], checkpoints=True)
                self.seconds += time.perf_counter() - start
                for (k, u), (result, checkpoint) in zip(members, outs):
                    found = Trained(u, result)
                    self._keep(k, u, checkpoint)  # before the entry: whoever reads it finds them
                    self.store.put(k, found.to_entry())
                    held.discard(k)
                    self.trained += 1
                    self.resumed += starts[k] is not None
                    self._remember(k, found)
            except BaseException:
                for k in held:
                    self.store.release(k)
                raise

    def _keep(self, key: str, unit: Unit, checkpoint: Checkpoint) -> None:
        """Store a trained unit's checkpoint: its weights, and the rest of its state unless its
        schedule has ended (nothing resumes from it then)."""
        if checkpoint.finished:
            self.store.put_weights(key, unit.tree.key, checkpoint.weights)
        else:
            self.store.put_checkpoint(key, unit.tree.key, checkpoint)

    def _resume_point(self, unit: Unit) -> Checkpoint | None:
        """The checkpoint of the unit's chain at the latest stop before the unit's that the store
        holds and that fits (one that does not is named in a line and passed over); None: the
        unit trains from scratch."""
        for stop in range(unit.trained_epochs - 1, 0, -1):
            earlier = replace(unit, stop=stop)
            key = self.key(earlier)
            if key not in self._known and self.store.get(key) is None:
                continue  # no such unit: no checkpoint either
            checkpoint = self.store.get_checkpoint(key, unit.tree.key)  # damaged or another's: None, with a line
            if checkpoint is None:
                continue
            problem = (f"it stopped after epoch {checkpoint.epoch}, not {stop}" if checkpoint.epoch != stop else
                       tree_resume_problem(self._unit_space(unit), unit.tree, checkpoint, seed=unit.seed,
                                           stop=unit.trained_epochs))
            if problem is None:
                return checkpoint
            warnings.warn(f"{self.store.where}: the checkpoint of unit {key[:12]} ({earlier.describe()}) does not "
                          f"resume its training ({problem}); not resumed from", DamagedEntryWarning, stacklevel=4)
        return None

    def _claimed(self, key: str, what: str, read: Callable[[Mapping[str, Any]], Value],
                 make: Callable[[], tuple[Value, dict[str, Any]]]) -> Value:
        """One stored entry besides the units (baselines, an extra): read from the store
        (``read`` raises one of ``_UNSOUND`` for one that is not sound: it is rejected, made again
        and stored), else made here when this process claims it (``make``: the value and its
        entry), else waited for while another process makes it."""
        since = None
        while True:
            entry = self.store.get(key)
            if entry is not None:
                try:
                    return read(entry)
                except _UNSOUND as exc:  # not sound: claimed and made again, by one process, and stored
                    self.store.reject(key, entry, _reason(exc))
                    continue
            if self.store.claim(key):
                try:
                    value, entry = make()
                except BaseException:
                    self.store.release(key)
                    raise
                self.store.put(key, entry)
                return value
            since = self._wait(since, what, key)

    def extra(self, unit: Unit, name: str, compute: Extra, *, shape: tuple[int, ...] | None = None
              ) -> np.ndarray | None:
        """A quantity named ``name`` computed from the unit's trained network, added to its stored
        evidence: read from the store, or computed here when this process claims it
        (``compute(net, train split of the unit's tasks, the tree's space)``, the network built
        from the unit's stored weights: the unit is obtained first, and trained only if no process
        has), or waited for. A stored value whose shape is not ``shape`` or that is not finite is
        computed again. None when the store answers units: it holds no network."""
        if self.answering is not None:
            return None
        key = hashlib.sha256(f"{self._prefix}|extra|{name}|{self.key(unit)}".encode()).hexdigest()
        if key not in self._extras:
            self.obtain([unit])

            def make() -> tuple[np.ndarray, dict[str, Any]]:
                own = self._unit_space(unit)
                own = own if set(unit.tree.tasks) == set(own.task_names) else subset_space(own, unit.tree.tasks)
                net = BranchedNet.from_space(unit.tree, own, pretrained=False).to(self.device)
                net.load_state_dict(self.weights(unit))
                value = np.asarray(compute(net, self.bundle.train.only(unit.tree.tasks), own), dtype=float)
                return value, {"extra": name, "shape": list(value.shape), "value": value.tolist()}

            self._extras[key] = self._claimed(key, f"the {name} of unit {self.key(unit)[:12]} ({unit.describe()})",
                                              lambda entry: _checked_extra(entry, name, shape), make)
        return self._extras[key]

    def baselines(self, seed: int) -> Baselines:
        """The single-task baselines of delta-m (and the all-shared tree) for the space's budget and
        ``seed``, as evidence: read from the store, or computed here when this process claims them
        (``mtnas.train.compute_baselines``, the all-shared tree obtained as a unit, so the study's
        all-shared trial and its searches read that training), or waited for."""
        if self.answering is not None:
            raise MtnasError(f"{self.answering.where} answers units of evidence and holds no delta-m baselines; "
                             "the trained methods score trees without them")
        shared = Unit(BranchingTree.all_shared(self.space.task_names, self.space.num_layers),
                      self.space.training.epochs, seed)

        def make() -> tuple[Baselines, dict[str, Any]]:
            found = compute_baselines(self.space, self.bundle, device=self.device, seed=seed, progress=self.progress,
                                      all_shared=lambda: self.obtain([shared])[0].result)
            return found, {"baselines": found.to_dict()}

        return self._claimed(self._baselines_key(seed), f"the delta-m baselines (seed {seed})",
                             lambda entry: Baselines.checked(entry["baselines"], self.space, seed), make)

    def _baselines_key(self, seed: int) -> str:
        return hashlib.sha256(f"{self._prefix}|baselines|{self.space.training.epochs}|{seed}".encode()).hexdigest()

    def weights(self, unit: Unit) -> Mapping[str, torch.Tensor]:
        """The unit's trained weights (a ``BranchedNet`` state dict), read from the store, else
        trained again (the same seed gives the same network) and stored, so the next process that
        needs them reads them. Nothing is kept here. Empty when the store answers units: it holds
        no networks."""
        if self.answering is not None:
            return {}
        key = self.key(unit)
        state = self.store.get_weights(key, unit.tree.key)
        if state is None:
            ((_, checkpoint),) = train_trees(self._unit_space(unit), self.bundle, [unit.tree], device=self.device,
                                             seed=unit.seed, stop=unit.trained_epochs,
                                             resume=[self._resume_point(unit)], checkpoints=True)
            self._keep(key, unit, checkpoint)
            state = checkpoint.weights
        return state
