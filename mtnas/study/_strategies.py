"""How a trial gets its tree: a strategy (``--strategy``), and the Optuna samplers (``--sampler``).

``pool``: the trials are the candidate trees of one budgeted search (``mtnas.study._pool``).

``differentiable``: the trial samples the search hyperparameters its method reads from
``search.ranges`` and runs one search (``mtnas.search.search_tree``: the trained default, or a
supernet method). ``sampled``: the trial samples the tree itself,
define-by-run: per layer, per current group, a split label per task (the black-box baseline).

The search code (and torch) is imported when a trial runs, not with this module: ``mtnas search
--help`` lists the strategies and samplers in a blink.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import optuna

from mtnas.core import MtnasError, Registry
from mtnas.study._run import INHERITED, SearchRun
from mtnas.tree import BranchingTree

if TYPE_CHECKING:
    import torch

    from mtnas.data import DatasetBundle
    from mtnas.space import SearchSpace
    from mtnas.train import EvidenceStore, Tracking

__all__ = ["SAMPLERS", "STRATEGIES", "Strategy", "TrialContext", "trial_space"]

#: ``--sampler``: an Optuna sampler from the study's seed.
SAMPLERS: Registry[Callable[[int], optuna.samplers.BaseSampler]] = Registry("sampler")
SAMPLERS.add("tpe", lambda seed: optuna.samplers.TPESampler(seed=seed))
SAMPLERS.add("nsga2", lambda seed: optuna.samplers.NSGAIISampler(seed=seed))
SAMPLERS.add("random", lambda seed: optuna.samplers.RandomSampler(seed=seed))


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one process shares: where its trial folders go, the seed, the device,
    the settings, and the artifact store every trial's files are uploaded to."""

    run: SearchRun
    seed: int
    device: torch.device
    strategy: str
    objectives: tuple[str, ...]
    artifacts: str
    trials: int  # completed trials the study is to hold
    progress: bool = False  # bars for each trial's phases (the search's and the proxy training's epochs)
    on_phase: Callable[[int, str], None] | None = None  # told (trial number, phase) as a trial moves on
    store: EvidenceStore | None = None  # where trained evidence is kept and claimed (None: this machine's cache)
    tracking: Tracking | None = None  # where the trials and their trainings are logged (--log-to)


class Strategy(Protocol):
    def __call__(self, trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, ctx: TrialContext) -> BranchingTree:
        """The tree of ``trial`` (it may write files into the trial's folder)."""


STRATEGIES: Registry[Strategy] = Registry("strategy")


def _suggest(trial: optuna.Trial, name: str, spec: tuple) -> Any:
    if all(isinstance(v, str) for v in spec):  # a list of choices, e.g. balancing: [equal, pcgrad]
        return trial.suggest_categorical(name, list(spec))
    low, high, *scale = spec
    if isinstance(low, int) and isinstance(high, int):
        return trial.suggest_int(name, low, high)
    return trial.suggest_float(name, float(low), float(high), log=bool(scale and scale[0] == "log"))


def trial_space(trial: optuna.Trial | optuna.trial.FrozenTrial, space: SearchSpace) -> SearchSpace:
    """``space`` with the trial's sampled ``training.balancing`` (``search.ranges.balancing``):
    the supernet's weight steps and the proxy training of the trial's tree both use it."""
    balancing = trial.params.get("balancing")
    return space if balancing is None else replace(space, training=replace(space.training, balancing=balancing))


#: Ranges every trial samples whatever the method: the branches per layer and the loss balancing.
_ALWAYS = ("max_branches", "balancing")


@STRATEGIES.register("differentiable")
def differentiable(trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, ctx: TrialContext) -> BranchingTree:
    """One search with the space's method (``search.method``), with the hyperparameters that method
    reads sampled from ``search.ranges``. Trained methods train their trees with the study's seed, so
    every trial's trees compare like for like and a tree trained once is not trained again."""
    from mtnas.model import save_weights
    from mtnas.search import METHODS, check_method, search_tree
    from mtnas.study._study_store import record_candidates  # torch: imported when a trial runs

    ranges = space.search.ranges
    method = METHODS.get(check_method(space.search))
    values = {name: _suggest(trial, name, spec) for name, spec in vars(ranges).items()
              if spec is not None and (name in method.uses or name in _ALWAYS)}
    branches = values.pop("max_branches", None)
    values.pop("balancing", None)  # a training setting: see trial_space
    space = trial_space(trial, space)
    cfg = replace(space.search, **values)
    if cfg.tau_min > cfg.tau0:
        cfg = replace(cfg, tau_min=cfg.tau0)
    if cfg.warmup_epochs >= cfg.epochs:
        cfg = replace(cfg, warmup_epochs=cfg.epochs - 1)
    result = search_tree(space, bundle, seed=ctx.seed + trial.number, hparams=cfg, device=ctx.device, branches=branches,
                         progress=ctx.progress, eval_seed=ctx.seed, store=ctx.store)
    record_candidates(trial, result.candidate_trials)  # a budgeted search's candidates: NAME:candidates
    folder = ctx.run.trial_dir(trial.number)
    result.save_routing(folder / "routing.npz")
    saved = result.save_candidates(folder / "candidates.json")
    if saved is not None:  # in the trackers too (--log-to), under the trial's scope
        from mtnas.study._tracking import log_candidates

        log_candidates(saved)
    # the weights the tree starts from: `mtnas export --with-weights` ships them
    source = f"supernet of trial {trial.number}" if result.derived is not None else f"proxy training in trial {trial.number}"
    save_weights(folder / INHERITED, result.weights, tree_key=result.tree.key,
                 extra_metadata={"tree": result.tree.describe(), "source": source})
    trial.set_user_attr("search_seconds", result.seconds)
    return result.tree


@STRATEGIES.register("pool")
def pool(trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, ctx: TrialContext) -> BranchingTree:
    """The study's trials are the candidates of one budgeted search, trained in rungs within
    ``search.budget`` (``mtnas.study._pool``)."""
    raise MtnasError(f"trial {trial.number}: strategy 'pool' asks its trials itself, one per candidate tree; "
                     "this trial was not one of them (was the study run by an older mtnas?)")


@STRATEGIES.register("sampled")
def sampled(trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, ctx: TrialContext) -> BranchingTree:
    """Define-by-run: per layer, per current group, a split label per task."""
    groups: list[tuple[str, ...]] = [space.task_names]
    partitions = []
    for layer, (k, can) in enumerate(zip(space.branches_per_layer, space.can_branch)):
        if can:
            new = []
            for g in groups:
                if len(g) == 1:
                    new.append(g)
                    continue
                labels = [trial.suggest_int(f"l{layer}_{t}", 0, k - 1) for t in g]
                new += [tuple(t for t, lab in zip(g, labels) if lab == v) for v in sorted(set(labels))]
            groups = new
        partitions.append(tuple(groups))
    return BranchingTree(space.task_names, tuple(partitions))
