"""The search methods by name (``search.method``), and ``search_tree``, which runs one.

Two kinds (``kind``):

* ``trained``: decide the sharing from trained trees (``mtnas.search._trained``): ``trained``
  (the default) and ``pairs`` (Standley et al., ICML 2020).
* ``supernet``: train a routing supernet and read the tree off its routes
  (``mtnas.search._differentiable``), with a routing method: ``plain`` (BMTAS, Bruggemann et al.
  2020; Learning to Branch, Guo et al. 2020), ``affinity`` (a lookahead-affinity prior), ``rsa``
  (Vandenhende et al., BMVC 2020), ``tag`` (Fifty et al., NeurIPS 2021), and ``dmtg`` (Gao et
  al., ICML 2024: a head for every task on every branch, weighted by a relaxed assignment).

Each method names the ``search`` hyperparameters it reads (``uses``): a study's trials sample
those, and only those, from ``search.ranges``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from mtnas.core import ConfigError, Registry, did_you_mean
from mtnas.data import DatasetBundle
from mtnas.search._budgeted import BudgetedSearch
from mtnas.search._differentiable import SupernetSearch
from mtnas.search._dmtg import DMTG
from mtnas.search._methods import Affinity, Plain
from mtnas.search._proposers import check_proposers
from mtnas.search._result import SearchResult
from mtnas.search._rsa import RepresentationSimilarity
from mtnas.search._tag import TaskAffinityGrouping
from mtnas.search._trained import PairsSelection, TrainedSearch
from mtnas.space import SearchConfig, SearchSpace
from mtnas.train import EvidenceStore

__all__ = ["METHODS", "SearchMethod", "check_method", "check_search_space", "search_tree"]


class SearchMethod(Protocol):
    kind: str
    uses: tuple[str, ...]

    def search(self, space: SearchSpace, bundle: DatasetBundle, *, seed: int, hparams: SearchConfig,
               device: torch.device | str, branches: int | Sequence[int] | None, progress: bool,
               eval_seed: int | None, store: EvidenceStore | None) -> SearchResult: ...


#: The routing supernet's hyperparameters, which every supernet method reads.
_SUPERNET = ("tau0", "tau_min", "cost_weight", "routing_lr", "warmup_epochs")

METHODS: Registry[SearchMethod] = Registry("search method")
METHODS.add("trained", TrainedSearch())
METHODS.add("pairs", PairsSelection())
METHODS.add("budget", BudgetedSearch())
METHODS.add("plain", SupernetSearch(Plain(), _SUPERNET))
METHODS.add("affinity", SupernetSearch(Affinity(), _SUPERNET + ("affinity_weight",)))
METHODS.add("rsa", SupernetSearch(RepresentationSimilarity(), ("cost_weight", "warmup_epochs")))
METHODS.add("tag", TaskAffinityGrouping())
METHODS.add("dmtg", DMTG())


def check_method(cfg: SearchConfig, where: str = "search") -> str:
    """``cfg.method`` if it names a registered search method; else a ConfigError at its key path."""
    if cfg.method not in METHODS:
        raise ConfigError(
            f"{where}.method: unknown search method {cfg.method!r}{did_you_mean(cfg.method, METHODS.names())}; "
            f"valid: {', '.join(METHODS.names())}"
        )
    return cfg.method


def check_search_space(space: SearchSpace) -> SearchSpace:
    """What a search needs of a parsed space beyond its schema (the search method is a search
    component, registered here); called before any study or search starts."""
    check_method(space.search, f"{space.name or 'space'}.search")
    check_proposers(space.search, f"{space.name or 'space'}.search")
    return space


def search_tree(
    space: SearchSpace,
    bundle: DatasetBundle,
    *,
    seed: int,
    hparams: SearchConfig | None = None,
    device: torch.device | str = "cpu",
    branches: int | Sequence[int] | None = None,
    progress: bool = False,
    eval_seed: int | None = None,
    store: EvidenceStore | None = None,
) -> SearchResult:
    """Run one search of a resolved ``space`` with its ``search.method`` and return the tree found.

    Args:
        space: a resolved search space (``SearchSpace.resolve``).
        bundle: its dataset.
        seed: fixes the search's own randomness (same seed, same tree on the CPU).
        hparams: search hyperparameters; the space's ``search`` section by default.
        branches: K per layer, overriding the space's ``routing.max_branches``.
        eval_seed: the seed the trained methods train their trees with (default ``seed``); a
            study passes its own seed, so every trial's trees compare like for like and a tree one
            trial trained is not trained again by the next.
        store: where the trained methods keep and claim their units of training (default: this
            machine's cache folder; a study passes its own, shared by its workers).
    """
    cfg = hparams or space.search
    method = METHODS.get(check_method(cfg))
    return method.search(space, bundle, seed=seed, hparams=cfg, device=torch.device(device), branches=branches,
                         progress=progress, eval_seed=eval_seed, store=store)
