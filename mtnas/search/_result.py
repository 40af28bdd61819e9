"""What one search found, whichever method ran it."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtnas.core import atomic_write_bytes, atomic_write_text
from mtnas.search._routing import DerivedTree
from mtnas.space import SearchConfig
from mtnas.tree import BranchingTree

__all__ = ["SearchResult"]


@dataclass(frozen=True)
class SearchResult:
    """What one search found.

    Attributes:
        tree: the tree found (canonical).
        derived: for a supernet search, the tree with the supernet node behind each of its nodes
            (None for the trained methods, which train trees, not a supernet).
        routing: a supernet search's per-epoch routing probabilities: ``heads`` (E, T, K_last),
            ``layer{l}`` (E, K_l, K_{l-1}), ``tau`` (E,), ``expected_cost`` (E,), ``epoch_seconds``
            (E,), and ``unchanged`` (E,): for how many epochs the argmax tree had not changed after
            each one (0 during warm-up and where it changed). E is the number of epochs run: fewer
            than ``hparams.epochs`` when the search stopped early. Empty for the trained methods.
        weights: a BranchedNet state dict for ``tree``: inherited from the supernet, or the
            trained tree's own weights.
        seconds: wall time of the search.
        stopped_epoch: the (0-based) epoch after which ``search.stable_epochs`` stopped the search
            early, or None when it ran every epoch.
        candidates: for the trained methods, every tree the search trained: ``trees`` (N,) their
            descriptions, ``epochs`` (how many it was trained for), ``delta_m`` (its mean task term
            against the best its budget's trees reached), ``cost`` (relative to all-shared),
            ``score``; and, repeated per row, ``noise`` (one training's noise the choice allowed
            for), ``scale`` (of short terms to whole ones), ``units`` and ``unit_cost`` (the units of
            training the search obtained, and their epochs times relative cost).
        spent: for the methods that train units of evidence, what they cost: the units' epochs
            times their cost relative to the all-shared tree, in trainings of the all-shared tree
            at the search budget (``SearchSpace.proxy_epochs``); None for the others.
        notes: what the search could not do as it usually does and did instead, one line each
            (e.g. no gradient agreement on a trainings table, which holds no network).
        candidate_trials: for the budgeted search, its candidates as the trials of its study of
            candidates (``optuna.trial.FrozenTrial``): the tree and the proposer's kind as user
            attributes, the score at each rung as intermediate values (step = epochs), complete
            with the final score or pruned; a study records them in ``NAME:candidates``.
    """

    tree: BranchingTree
    derived: DerivedTree | None
    routing: Mapping[str, np.ndarray]
    weights: Mapping[str, torch.Tensor]
    seconds: float
    hparams: SearchConfig
    stopped_epoch: int | None = None
    candidates: Mapping[str, np.ndarray] = field(default_factory=dict)
    spent: float | None = None
    notes: tuple[str, ...] = ()
    candidate_trials: tuple[Any, ...] = ()

    @property
    def epochs_run(self) -> int:
        return len(self.routing.get("tau", ()))

    def save_routing(self, path: str | Path) -> Path | None:
        """Write the routing history as ``routing.npz`` (arrays above plus the task names); None
        (nothing written) when the search trained no routing."""
        if not self.routing:
            return None
        buffer = io.BytesIO()
        np.savez_compressed(buffer, tasks=np.array(self.tree.tasks), **self.routing)
        atomic_write_bytes(path, buffer.getvalue())  # a crash leaves the old file or the new one
        return Path(path)

    def save_candidates(self, path: str | Path) -> Path | None:
        """Write the trained candidates as ``candidates.json``: ``{"chosen", "gain_per_cost", "noise",
        "scale", "units", "unit_cost", "trees"}``, the trees a list of {tree, epochs, delta_m, cost, score},
        best score first; None when the search trained no candidate."""
        if not self.candidates:
            return None
        c = self.candidates
        rows = [{"tree": str(t), "epochs": int(e), "delta_m": float(d), "cost": float(k), "score": float(s)}
                for t, e, d, k, s in zip(c["trees"], c["epochs"], c["delta_m"], c["cost"], c["score"])]
        extra = {name: float(c[name][0]) for name in ("noise", "scale", "units", "unit_cost")
                 if name in c and len(c[name])}
        data = {"chosen": self.tree.describe(), "gain_per_cost": self.hparams.gain_per_cost, **extra,
                "trees": sorted(rows, key=lambda r: (-r["epochs"], -r["score"]))}
        atomic_write_text(path, json.dumps(data, indent=1))
        return Path(path)
