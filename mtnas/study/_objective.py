"""One trial of ``mtnas search``: get a tree (an enqueued fixed tree or the strategy's), train it,
score it, and write its files.

The tree is trained for the search's budget (``SearchSpace.proxy_epochs``) and scored by delta-m
on the validation split against single-task baselines of the same budget; a tree the trial's
search trained already is read from the study's evidence (``mtnas.train.Evidence``). Its
objective values are looked up by name (``mtnas.study._objectives``). A tree already evaluated in the study (same loss balancing) is not
retrained: its result is reused. The independent tree is the single-task baselines themselves
(one network per task; trained once, batched): its result is read off them, delta-m 0. A NaN/inf
loss fails the trial with its reason.
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from mtnas.core import __version__, atomic_write_text
from mtnas.data import DatasetBundle
from mtnas.model import tree_cost
from mtnas.space import SearchSpace
from mtnas.study._artifacts import open_artifact_store, upload_trial_files
from mtnas.study._liveness import mark_alive, wait_for_turn
from mtnas.study._objectives import OBJECTIVES, cost_objective
from mtnas.study._pruning import epoch_monitor
from mtnas.study._strategies import STRATEGIES, TrialContext, trial_space
from mtnas.train import (
    SUM_OF_SOLO_LOSSES,
    Baselines,
    Evidence,
    NonFiniteLossError,
    Unit,
    delta_m,
    proxy_space,
    train_tree,
)
from mtnas.tree import Architecture, BranchingTree
from mtnas.viz import draw_tree, tree_title

__all__ = ["FIXED", "evaluate_trial", "proxy_space", "write_trial_files"]

#: The trees enqueued at the start of every study (``fixed_tree`` user attribute).
FIXED = {"all-shared": BranchingTree.all_shared, "independent": BranchingTree.independent}


def _evaluated(study: optuna.Study, key: str, balancing: str) -> optuna.trial.FrozenTrial | None:
    """A completed trial that trained tree ``key`` with the same loss balancing."""
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.user_attrs.get("tree_key") == key and t.user_attrs.get("balancing", "equal") == balancing:
            return t
    return None


def _phase(trial: optuna.Trial, ctx: TrialContext, name: str) -> None:
    """The trial enters phase ``name``: kept in the trial (``mtnas trials`` shows it) and shown on the bar."""
    trial.set_user_attr("phase", name)
    if ctx.on_phase is not None:
        ctx.on_phase(trial.number, name)


def evaluate_trial(
    trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines, ctx: TrialContext
) -> tuple[float, ...]:
    """The Optuna objective: the trial's objective values, in ``ctx.objectives`` order.

    A trial that ends with an error keeps the reason in its ``fail_reason`` (``mtnas trials``
    shows it): a NaN loss, an interruption (Ctrl-C), any other exception.
    """
    try:
        return _evaluate(trial, space, bundle, baselines, ctx)
    except optuna.TrialPruned as exc:
        if str(exc):
            trial.set_user_attr("pruned_reason", str(exc))
        raise
    except KeyboardInterrupt:
        _fail_reason(trial, f"interrupted (Ctrl-C) during {trial.user_attrs.get('phase', 'its start')}")
        raise
    except Exception as exc:
        if "fail_reason" not in trial.user_attrs:
            _fail_reason(trial, f"{type(exc).__name__}: {str(exc).strip()[:300]}")
        raise


def _fail_reason(trial: optuna.Trial, reason: str) -> None:
    try:
        trial.set_user_attr("fail_reason", reason)
    except Exception:  # the storage itself failed: the original error says more
        pass


def _evaluate(
    trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines, ctx: TrialContext
) -> tuple[float, ...]:
    mark_alive(trial)  # first: a process killed from here on leaves a trial anyone can fail and retry
    if not wait_for_turn(trial, ctx.trials):
        trial.study.stop()  # the study holds its trials: this one is not run (exactly N complete)
        raise optuna.TrialPruned(f"the study already holds {ctx.trials} completed trials")
    fixed = trial.user_attrs.get("fixed_tree")
    if fixed:
        tree = FIXED[fixed](space.task_names, space.num_layers)
    else:
        _phase(trial, ctx, "search" if ctx.strategy == "differentiable" else f"{ctx.strategy} tree")
        tree = STRATEGIES.get(ctx.strategy)(trial, space, bundle, ctx)
    space = trial_space(trial, space)
    trial.set_user_attr("balancing", space.training.balancing)
    trial.set_user_attr("tree_key", tree.key)
    trial.set_user_attr("tree", tree.describe())
    trial.set_user_attr("partitions", tree.to_dict()["partitions"])
    seen = _evaluated(trial.study, tree.key, space.training.balancing)
    if seen is not None:  # the same tree was trained before in this study: reuse its result
        trial.set_user_attr("reused_from", seen.number)
        attrs = {key: seen.user_attrs[key] for key in ("val", "test", "params", "flops", "delta_m")}
    else:
        try:
            if fixed == "independent" and space.training.balancing in SUM_OF_SOLO_LOSSES:
                # T networks sharing nothing: the single-task baselines already trained them
                result = baselines.independent(space)
                trial.set_user_attr("from_baselines", True)
            else:
                cost = tree_cost(tree, space).to_dict()[cost_objective(ctx.objectives) or "flops"]
                monitor = epoch_monitor(trial, space.search.pruner, float(cost),
                                        lambda val: delta_m(val, baselines.metrics("val"), space))
                _phase(trial, ctx, "proxy training")
                proxy = proxy_space(space)
                if monitor is None:  # a unit of evidence: trained once, by whichever worker gets to it first
                    unit = Unit(tree, proxy.training.epochs, ctx.seed)
                    (found,) = Evidence(proxy, bundle, device=ctx.device, store=ctx.store,
                                        progress=ctx.progress).obtain([unit])
                    result = found.result
                else:
                    result = train_tree(tree, proxy, bundle, device=ctx.device, seed=ctx.seed, monitor=monitor,
                                        progress=ctx.progress, desc=f"trial {trial.number} proxy training")
        except NonFiniteLossError as exc:
            trial.set_user_attr("fail_reason", str(exc))  # the trial fails with its reason; the study goes on
            raise
        attrs = {"val": result.val, "test": result.test, "params": result.cost.params,
                 "flops": result.cost.flops, "delta_m": baselines.delta_m(result, space, "val")}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    write_trial_files(ctx, trial, tree, space, attrs)
    return tuple(OBJECTIVES.get(name).value(attrs) for name in ctx.objectives)


def write_trial_files(ctx: TrialContext, trial: optuna.Trial, tree: BranchingTree, space: SearchSpace,
                 attrs: dict[str, Any]) -> None:
    """``trials/NNNN/``: arch.json, metrics.json and tree.png, each written atomically; then every
    file of the folder is uploaded to the study's artifact store (optuna-dashboard shows them, and
    any machine that reaches the storage can read the trial)."""
    number = trial.number
    folder = ctx.run.trial_dir(number)
    Architecture(
        tree,
        space.to_dict(),
        cost={"params": attrs["params"], "flops": attrs["flops"]},
        metrics={"val": attrs["val"], "delta_m": attrs["delta_m"]},
        provenance={"run": ctx.run.root.name, "trial": number, "mtnas_version": __version__},
    ).save(folder / "arch.json")
    atomic_write_text(folder / "metrics.json", json.dumps(attrs, indent=1))
    draw_tree(tree, folder / "tree.png", title=tree_title(
        f"trial {number}", params=attrs["params"], flops=attrs["flops"], delta_m=attrs["delta_m"]))
    upload_trial_files(trial, folder, open_artifact_store(ctx.artifacts))
