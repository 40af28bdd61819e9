"""One trial of ``mtnas search``: get a tree (an enqueued fixed tree or the strategy's), train it
briefly, score it, and write its files.

The tree is trained for ``search.proxy_epochs`` and scored by delta-m on the validation split
against single-task baselines of the same budget; its objective values are looked up by name
(``mtnas.study._objectives``). A tree already evaluated in the study (same loss balancing) is not
retrained: its result is reused. A NaN/inf loss fails the trial with its reason.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import optuna

from mtnas.core import __version__, atomic_write_text
from mtnas.data import DatasetBundle
from mtnas.space import SearchSpace
from mtnas.study._liveness import mark_alive
from mtnas.study._objectives import OBJECTIVES
from mtnas.study._strategies import STRATEGIES, TrialContext, trial_space
from mtnas.train import Baselines, NonFiniteLossError, train_tree
from mtnas.tree import Architecture, BranchingTree
from mtnas.viz import draw_tree, tree_title

__all__ = ["FIXED", "evaluate_trial", "proxy_space"]

#: The trees enqueued at the start of every study (``fixed_tree`` user attribute).
FIXED = {"all-shared": BranchingTree.all_shared, "independent": BranchingTree.independent}


def proxy_space(space: SearchSpace) -> SearchSpace:
    """The space with the trials' short training budget (``search.proxy_epochs``).

    Trial trees and the single-task baselines of delta-m are both trained on it, so delta-m
    compares like with like.
    """
    return replace(space, training=replace(space.training, epochs=space.search.proxy_epochs))


def _evaluated(study: optuna.Study, key: str, balancing: str) -> optuna.trial.FrozenTrial | None:
    """A completed trial that trained tree ``key`` with the same loss balancing."""
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.user_attrs.get("tree_key") == key and t.user_attrs.get("balancing", "equal") == balancing:
            return t
    return None


def evaluate_trial(
    trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines, ctx: TrialContext
) -> tuple[float, ...]:
    """The Optuna objective: the trial's objective values, in ``ctx.objectives`` order."""
    mark_alive(trial)  # first: a process killed from here on leaves a trial anyone can fail and retry
    fixed = trial.user_attrs.get("fixed_tree")
    if fixed:
        tree = FIXED[fixed](space.task_names, space.num_layers)
    else:
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
            result = train_tree(tree, proxy_space(space), bundle, device=ctx.device, seed=ctx.seed)
        except NonFiniteLossError as exc:
            trial.set_user_attr("fail_reason", str(exc))  # the trial fails with its reason; the study goes on
            raise
        attrs = {"val": result.val, "test": result.test, "params": result.cost.params,
                 "flops": result.cost.flops, "delta_m": baselines.delta_m(result, space, "val")}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    _write_trial(ctx, trial, tree, space, attrs)
    return tuple(OBJECTIVES.get(name).value(attrs) for name in ctx.objectives)


def _write_trial(ctx: TrialContext, trial: optuna.Trial, tree: BranchingTree, space: SearchSpace,
                 attrs: dict[str, Any]) -> None:
    """``trials/NNNN/``: arch.json, metrics.json and tree.png (also an Optuna artifact of the trial,
    so optuna-dashboard shows it)."""
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
    picture = draw_tree(tree, folder / "tree.png", title=tree_title(
        f"trial {number}", params=attrs["params"], flops=attrs["flops"], delta_m=attrs["delta_m"]))
    artifact = optuna.artifacts.upload_artifact(
        artifact_store=ctx.run.artifact_store(), file_path=str(picture), study_or_trial=trial, mimetype="image/png"
    )
    trial.set_user_attr("tree_png_artifact", artifact)
