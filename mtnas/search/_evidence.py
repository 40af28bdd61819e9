"""Trained evidence: units of training, keyed by their content, shared through an evidence store.

A :class:`Unit` is one training: a tree from fresh weights (seeded) for a number of epochs on a
space's data, exactly as ``mtnas.train.train_tree`` trains it (its cosine schedule over those
epochs). Its key digests everything the result depends on: the space without its search settings
(``SearchSpace.training_hash``: backbone, tasks, losses, balancing, optimiser), the dataset's
content (``mtnas.data.data_digest``), mtnas's version, the tree, the epochs and the seed. A
search asks :class:`Evidence` for the units it needs (``obtain``); each is read from the store
when some process trained it, trained here when this process claims it, or waited for while
another process trains it (``mtnas.search._store``), so the processes of a study split a search's
trainings and none trains what another did.

Units that are all-shared trees can also carry the gradient agreement of their trained network
(``probe``, ``mtnas.search._gradients``), so the signal travels with the entry and needs no
weights.

Every unit obtained is also counted in a ledger (``Evidence.spent``): its epochs times its tree's
cost relative to the all-shared tree (``search.cost_metric``), whether this process trained it or
read it, so what a search costs does not depend on what a cache held.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from mtnas.core import MtnasError, __version__, first_line
from mtnas.data import DatasetBundle, data_digest
from mtnas.model import BranchedNet, tree_cost
from mtnas.search._gradients import gradient_agreement
from mtnas.search._store import EvidenceStore, LocalStore
from mtnas.space import SearchSpace
from mtnas.train import Baselines, TreeResult, cache_dir, checked_result, compute_baselines, subset_space, train_trees
from mtnas.tree import BranchingTree

__all__ = ["EVIDENCE_FORMAT", "AnsweringStore", "Evidence", "Trained", "Unit", "default_store"]

#: Changes whenever an entry's meaning changes: older entries are then not read.
EVIDENCE_FORMAT = 2
#: Seconds between the lines of a process waiting for units another process trains.
WAIT_LINE_EVERY = 30.0
#: What checking a stored entry raises when it is not sound.
_UNSOUND = (MtnasError, KeyError, TypeError, ValueError, AttributeError)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}" if isinstance(exc, (KeyError, TypeError)) else first_line(exc)


@dataclass(frozen=True)
class Unit:
    """One training: ``tree`` (over all or some of the space's tasks) from fresh weights seeded by
    ``seed``, with the schedule of ``epochs`` epochs, trained for all of them or for the first
    ``stop``; with ``probe``, also the gradient agreement of the trained network (all-shared trees
    only)."""

    tree: BranchingTree
    epochs: int
    seed: int
    probe: bool = False
    stop: int | None = None

    @property
    def trained_epochs(self) -> int:
        return min(self.stop or self.epochs, self.epochs)

    def describe(self) -> str:
        part = f"{self.trained_epochs} of {self.epochs}" if self.trained_epochs < self.epochs else f"{self.epochs}"
        return f"{self.tree.describe()} ({part} epochs, seed {self.seed})"


@dataclass(frozen=True)
class Trained:
    """A unit's result: per-task metrics on val and test, the training's seconds, and the gradient
    agreement (T, T) when probed."""

    unit: Unit
    result: TreeResult
    agreement: np.ndarray | None = None

    def to_entry(self) -> dict:
        return {"result": self.result.to_dict(),
                "agreement": None if self.agreement is None else self.agreement.tolist()}

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
        agreement = None if entry.get("agreement") is None else np.asarray(entry["agreement"], dtype=float)
        if result.tree != unit.tree:
            raise ValueError(f"it holds the tree {result.tree.describe()!r}, not the unit's")
        if unit.probe and (agreement is None or agreement.shape != (len(unit.tree.tasks),) * 2
                           or not np.isfinite(agreement).all()):
            raise ValueError("its gradient agreement is missing, of another shape, or not finite")
        return cls(unit, result, agreement)


@runtime_checkable
class AnsweringStore(Protocol):
    """A store that answers units from trainings it holds (a table of published ones) and trains
    none: ``Evidence`` asks it for every unit, and keeps its ledger by the store's rules."""

    where: str  # what the store is, for messages

    def answer(self, unit: Unit, space: SearchSpace) -> Trained:
        """The unit's result (``agreement`` None: no network to probe); an ``MtnasError`` of one
        line when the store cannot answer it."""

    def relative_cost(self, tree: BranchingTree) -> float:
        """The tree's cost relative to the all-shared tree."""

    def spent(self, units: Sequence[Unit]) -> float:
        """What obtaining ``units`` cost, in epochs of the all-shared tree."""


def default_store() -> LocalStore:
    """This machine's evidence folder: ``$MTNAS_CACHE_DIR/evidence``."""
    return LocalStore(cache_dir() / "evidence")


class Evidence:
    """The units of one space and dataset: obtained once, from the store or trained here.

    Args:
        space: a resolved search space (its ``training`` section trains every unit; a unit's
            ``epochs`` replaces ``training.epochs``).
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
        self._prefix = json.dumps({"format": EVIDENCE_FORMAT, "mtnas": __version__, "space": space.training_hash,
                                   "data": None if bundle is None else data_digest(bundle)}, sort_keys=True)
        self._known: dict[str, Trained] = {}
        self._weights: dict[str, dict[str, torch.Tensor]] = {}
        self._costs: dict[str, float] = {}
        self.order: list[Trained] = []  # every unit obtained, in the order first obtained
        self.trained = 0  # units this object trained (not read from the store)
        self.seconds = 0.0  # their training time

    def cost(self, tree: BranchingTree) -> float:
        """The tree's cost (``search.cost_metric``) relative to the all-shared tree over every task
        of the space (a tree over fewer tasks, as a pair's network, costs a little less than 1); a
        store that answers units says what its trees cost."""
        if self.answering is not None:
            return self.answering.relative_cost(tree)
        if tree.key not in self._costs:
            shared = BranchingTree.all_shared(self.space.task_names, self.space.num_layers)
            metric = self.space.search.cost_metric
            own = self.space if len(tree.tasks) == len(self.space.tasks) else subset_space(self.space, tree.tasks)
            self._costs[tree.key] = float(getattr(tree_cost(tree, own), metric)) / float(
                getattr(tree_cost(shared, self.space), metric))
        return self._costs[tree.key]

    @property
    def spent(self) -> float:
        """The ledger: every unit obtained so far, its trained epochs times its relative cost, in
        epochs of the all-shared tree (divide by ``SearchSpace.proxy_epochs`` for trainings of it at
        the search budget). A store that answers units keeps this ledger by its own rules."""
        if self.answering is not None:
            return self.answering.spent([f.unit for f in self.order])
        return sum(f.unit.trained_epochs * self.cost(f.unit.tree) for f in self.order)

    def key(self, unit: Unit) -> str:
        spec = json.dumps({"tree": unit.tree.to_dict(), "epochs": unit.epochs, "seed": unit.seed,
                           "probe": unit.probe, "stop": unit.trained_epochs}, sort_keys=True)
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

    def _train(self, claimed: list[tuple[str, Unit]]) -> None:
        """Train the claimed units, stacked by (epochs, stop, seed), and store each result."""
        groups: dict[tuple[int, int, int], list[tuple[str, Unit]]] = {}
        for k, u in claimed:
            groups.setdefault((u.epochs, u.trained_epochs, u.seed), []).append((k, u))
        for (epochs, stop, seed), members in groups.items():
            space = replace(self.space, training=replace(self.space.training, epochs=epochs))
            start = time.perf_counter()
            try:
                outs = train_trees(space, self.bundle, [u.tree for _, u in members], device=self.device, seed=seed,
                                   progress=self.progress, stop=stop)
            except BaseException:
                for k, _ in members:
                    self.store.release(k)
                raise
            self.seconds += time.perf_counter() - start
            for (k, u), (result, weights) in zip(members, outs):
                agreement = self._probe(space, u, weights) if u.probe else None
                found = Trained(u, result, agreement)
                self.store.put(k, found.to_entry())
                self.trained += 1
                self._weights[k] = weights
                self._remember(k, found)

    def _probe(self, space: SearchSpace, unit: Unit, weights: dict[str, torch.Tensor]) -> np.ndarray:
        net = BranchedNet.from_space(unit.tree, space, pretrained=False).to(self.device)
        net.load_state_dict(weights)
        return gradient_agreement(net, self.bundle.train.only(unit.tree.tasks), space)

    def baselines(self, seed: int) -> Baselines:
        """The single-task baselines of delta-m (and the all-shared tree) for the space's budget and
        ``seed``, as a unit of evidence: read from the store, or computed here when this process
        claims them (``mtnas.train.compute_baselines``), or waited for."""
        if self.answering is not None:
            raise MtnasError(f"{self.answering.where} answers units of evidence and holds no delta-m baselines; "
                             "the trained methods score trees without them")
        key = self._baselines_key(seed)
        since = None
        while True:
            entry = self.store.get(key)
            if entry is not None:
                try:
                    return Baselines.checked(entry["baselines"], self.space, seed)
                except _UNSOUND as exc:  # not sound: claimed and computed again, by one process, and stored
                    self.store.reject(key, entry, _reason(exc))
                    continue
            if self.store.claim(key):
                try:
                    found = compute_baselines(self.space, self.bundle, device=self.device, seed=seed,
                                              progress=self.progress)
                except BaseException:
                    self.store.release(key)
                    raise
                self.store.put(key, {"baselines": found.to_dict()})
                return found
            since = self._wait(since, f"the delta-m baselines (seed {seed})", key)

    def _baselines_key(self, seed: int) -> str:
        return hashlib.sha256(f"{self._prefix}|baselines|{self.space.training.epochs}|{seed}".encode()).hexdigest()

    def weights(self, unit: Unit) -> Mapping[str, torch.Tensor]:
        """The unit's trained weights (a ``BranchedNet`` state dict): from this process's training,
        else from the store, else trained again (the same seed gives the same network) and stored,
        so the next process that needs them reads them. Empty when the store answers units: it
        holds no networks."""
        if self.answering is not None:
            return {}
        key = self.key(unit)
        if key in self._weights:
            state = self._weights[key]
            self.store.put_weights(key, unit.tree.key, state)
            return state
        state = self.store.get_weights(key, unit.tree.key)
        if state is None:
            space = replace(self.space, training=replace(self.space.training, epochs=unit.epochs))
            ((_, state),) = train_trees(space, self.bundle, [unit.tree], device=self.device, seed=unit.seed,
                                        stop=unit.trained_epochs)
            self.store.put_weights(key, unit.tree.key, state)
        self._weights[key] = state
        return state
