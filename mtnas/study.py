"""``mtnas search``: an Optuna study of sharing trees, quality against cost, in a run folder.

Each trial either runs one differentiable search with hyperparameters sampled from the space's
``search.ranges`` (strategy ``differentiable``) or samples a tree itself, define-by-run
(strategy ``sampled``); the tree is then trained briefly (``search.proxy_epochs``) and scored by
delta-m on the validation split against cached single-task baselines of the same budget. Objectives: maximise
delta-m, minimise FLOPs (or params). The all-shared and independent trees are enqueued first; a
tree already evaluated in the study is not retrained. The study lives in ``runs/NAME/study.db``
(SQLite) with heartbeats (see ``mtnas.storage``), so a killed run's trial is failed and retried
on ``--resume`` or by any process still running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import yaml

from mtnas import __version__
from mtnas.architecture import Architecture
from mtnas.baselines import Baselines, compute_baselines
from mtnas.checkpoint import save_weights
from mtnas.data import DatasetBundle
from mtnas.errors import MtnasError, did_you_mean
from mtnas.io import atomic_write_text
from mtnas.registry import Registry
from mtnas.search import search_tree
from mtnas.space import SearchSpace, load_resolved
from mtnas.storage import open_storage
from mtnas.train import NonFiniteLossError, select_device
from mtnas.tree import BranchingTree
from mtnas.tree_training import train_tree
from mtnas.viz import draw_tree, tree_title

__all__ = ["OBJECTIVES", "SAMPLERS", "STRATEGIES", "SearchRun", "load_study", "run_search", "run_worker"]

SAMPLERS: Registry[Any] = Registry("sampler")
SAMPLERS.add("tpe", lambda seed: optuna.samplers.TPESampler(seed=seed))
SAMPLERS.add("nsga2", lambda seed: optuna.samplers.NSGAIISampler(seed=seed))
SAMPLERS.add("random", lambda seed: optuna.samplers.RandomSampler(seed=seed))

#: objective name -> (direction, value from a trained tree and its delta-m)
OBJECTIVES: dict[str, tuple[str, Any]] = {
    "delta_m": ("maximize", lambda r, dm: dm),
    "flops": ("minimize", lambda r, dm: float(r.cost.flops)),
    "params": ("minimize", lambda r, dm: float(r.cost.params)),
}

STRATEGIES: Registry[Any] = Registry("strategy")

#: A differentiable trial's inherited supernet weights, in its trial folder.
INHERITED = "inherited.safetensors"


@dataclass(frozen=True)
class SearchRun:
    """A run folder: where everything of one ``mtnas search`` lives."""

    root: Path

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.root / 'study.db').resolve()}"

    def artifact_store(self) -> optuna.artifacts.FileSystemArtifactStore:
        """Where trial pictures are uploaded for optuna-dashboard (``--artifact-dir runs/NAME/artifacts``)."""
        folder = self.root / "artifacts"
        folder.mkdir(parents=True, exist_ok=True)
        return optuna.artifacts.FileSystemArtifactStore(str(folder))

    def trial_dir(self, number: int) -> Path:
        return self.root / "trials" / f"{number:04d}"

    def storage(self) -> str:
        """The study's storage URL from ``run.json``; a folder that was copied or moved reads its
        own ``study.db`` or ``journal.log``, not the file at the absolute path it was made with."""
        url = str(self.info()["storage"])
        if url.startswith("sqlite:///") and (self.root / "study.db").is_file():
            return self.storage_url
        if url.startswith("journal:///") and (self.root / "journal.log").is_file():
            return f"journal:///{(self.root / 'journal.log').resolve()}"
        return url

    def info(self) -> dict[str, Any]:
        path = self.root / "run.json"
        if not path.is_file():
            raise MtnasError(f"{self.root}: not an mtnas run folder (no run.json); start one with 'mtnas search'")
        return json.loads(path.read_text())


def load_study(run: SearchRun) -> optuna.Study:
    info = run.info()
    try:
        return optuna.load_study(study_name=info["study"], storage=open_storage(run.storage()))
    except KeyError:
        raise MtnasError(f"{run.root}: the study {info['study']!r} is missing from {info['storage']}") from None


# --- strategies ------------------------------------------------------------------------------


def _suggest(trial: optuna.Trial, name: str, spec: tuple) -> Any:
    if all(isinstance(v, str) for v in spec):  # a list of choices, e.g. balancing: [equal, pcgrad]
        return trial.suggest_categorical(name, list(spec))
    low, high, *scale = spec
    if isinstance(low, int) and isinstance(high, int):
        return trial.suggest_int(name, low, high)
    return trial.suggest_float(name, float(low), float(high), log=bool(scale and scale[0] == "log"))


def _differentiable(trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, ctx: dict) -> BranchingTree:
    ranges = space.search.ranges
    values = {name: _suggest(trial, name, spec) for name, spec in vars(ranges).items() if spec is not None}
    branches = values.pop("max_branches", None)
    values.pop("balancing", None)  # a training setting: see _trial_space
    space = _trial_space(trial, space)
    cfg = replace(space.search, **values)
    if cfg.tau_min > cfg.tau0:
        cfg = replace(cfg, tau_min=cfg.tau0)
    if cfg.warmup_epochs >= cfg.epochs:
        cfg = replace(cfg, warmup_epochs=cfg.epochs - 1)
    result = search_tree(space, bundle, seed=ctx["seed"] + trial.number, hparams=cfg, device=ctx["device"], branches=branches)
    folder = ctx["run"].trial_dir(trial.number)
    result.save_routing(folder / "routing.npz")
    # the supernet weights the derived tree inherits: `mtnas export --with-weights` ships them
    save_weights(folder / INHERITED, result.weights, tree_key=result.tree.key,
                 extra_metadata={"tree": result.tree.describe(), "source": f"supernet of trial {trial.number}"})
    trial.set_user_attr("search_seconds", result.seconds)
    return result.tree


def _trial_space(trial: optuna.Trial, space: SearchSpace) -> SearchSpace:
    """``space`` with the trial's sampled ``training.balancing`` (``search.ranges.balancing``):
    the supernet's weight steps and the proxy training of the trial's tree both use it."""
    balancing = trial.params.get("balancing")
    return space if balancing is None else replace(space, training=replace(space.training, balancing=balancing))


def _sampled(trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, ctx: dict) -> BranchingTree:
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


STRATEGIES.add("differentiable", _differentiable)
STRATEGIES.add("sampled", _sampled)

FIXED = {"all-shared": BranchingTree.all_shared, "independent": BranchingTree.independent}


# --- the objective -----------------------------------------------------------------------------


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


def _objective(trial: optuna.Trial, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines, ctx: dict) -> tuple:
    fixed = trial.user_attrs.get("fixed_tree")
    if fixed:
        tree = FIXED[fixed](space.task_names, space.num_layers)
    else:
        tree = STRATEGIES.get(ctx["strategy"])(trial, space, bundle, ctx)
    space = _trial_space(trial, space)
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("balancing", space.training.balancing)
    trial.set_user_attr("tree_key", tree.key)
    trial.set_user_attr("tree", tree.describe())
    trial.set_user_attr("partitions", tree.to_dict()["partitions"])
    seen = _evaluated(trial.study, tree.key, space.training.balancing)
    if seen is not None:  # the same tree was trained before in this study: reuse its result
        trial.set_user_attr("reused_from", seen.number)
        for key in ("val", "test", "params", "flops", "delta_m"):
            trial.set_user_attr(key, seen.user_attrs[key])
        _write_trial(ctx, trial, tree, space, dict(seen.user_attrs))
        return tuple(seen.values)
    try:
        result = train_tree(tree, proxy_space(space), bundle, device=ctx["device"], seed=ctx["seed"])
    except NonFiniteLossError as exc:
        trial.set_user_attr("fail_reason", str(exc))  # the trial fails with its reason; the study goes on
        raise
    dm = baselines.delta_m(result, space, "val")
    attrs = {"val": result.val, "test": result.test, "params": result.cost.params, "flops": result.cost.flops, "delta_m": dm}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    _write_trial(ctx, trial, tree, space, attrs)
    return tuple(OBJECTIVES[name][1](result, dm) for name in ctx["objectives"])


def _write_trial(ctx: dict, trial: optuna.Trial, tree: BranchingTree, space: SearchSpace, attrs: dict) -> None:
    """``trials/NNNN/``: arch.json, metrics.json and tree.png (also an Optuna artifact of the trial,
    so optuna-dashboard shows it)."""
    number = trial.number
    folder = ctx["run"].trial_dir(number)
    Architecture(
        tree,
        space.to_dict(),
        cost={"params": attrs["params"], "flops": attrs["flops"]},
        metrics={"val": attrs["val"], "delta_m": attrs["delta_m"]},
        provenance={"run": ctx["run"].root.name, "trial": number, "mtnas_version": __version__},
    ).save(folder / "arch.json")
    atomic_write_text(folder / "metrics.json", json.dumps(attrs, indent=1))
    picture = draw_tree(tree, folder / "tree.png", title=tree_title(
        f"trial {number}", params=attrs["params"], flops=attrs["flops"], delta_m=attrs["delta_m"]))
    artifact = optuna.artifacts.upload_artifact(
        artifact_store=ctx["run"].artifact_store(), file_path=str(picture), study_or_trial=trial, mimetype="image/png"
    )
    trial.set_user_attr("tree_png_artifact", artifact)


# --- the command -------------------------------------------------------------------------------


def pareto(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The Pareto-best trials, one per distinct tree, by delta-m."""
    best, seen = [], set()
    for t in sorted(study.best_trials, key=lambda t: -t.values[0]):
        key = t.user_attrs.get("tree_key")
        if key not in seen:
            seen.add(key)
            best.append(t)
    return best


def run_search(
    space_arg: str | SearchSpace,
    *,
    name: str | None = None,
    trials: int | None = None,
    strategy: str = "differentiable",
    objectives: str = "delta_m,flops",
    sampler: str = "tpe",
    seed: int | None = None,
    resume: bool = False,
    device: str = "auto",
    runs_dir: str | Path = "runs",
    workers: int = 1,
    storage: str | None = None,
    timeout: float | None = None,
    progress: bool = True,
) -> tuple[SearchRun, optuna.Study]:
    """Create (or ``resume``) ``runs_dir/NAME`` and run the study until ``trials`` completed.

    ``space_arg`` is a built-in space name, a YAML path, or a ``SearchSpace`` (NAME defaults to
    its name).

    ``workers`` > 1 runs that many local processes on a journal file in the run folder (0 creates
    the study and returns, for ``mtnas worker`` processes to run);
    ``storage`` (an RDB URL such as ``postgresql://...``) keeps the study elsewhere, where
    ``mtnas worker`` processes on any machine can join it. ``timeout`` (seconds) stops starting
    new trials after that wall time, so strategies can be compared at an equal budget.
    """
    default_name = space_arg.name if isinstance(space_arg, SearchSpace) else Path(str(space_arg)).stem
    run = SearchRun(Path(runs_dir) / (name or default_name))
    if resume:
        info = run.info()
        space_arg, strategy, seed = str(run.root / "space.yaml"), info["strategy"], info["seed"]
        objectives, trials, storage = ",".join(info["objectives"]), trials or info["trials"], run.storage()
    elif (run.root / "run.json").exists():
        raise MtnasError(f"{run.root} exists already: use --resume to continue it, or another --name")
    STRATEGIES.get(strategy)
    names = [o.strip() for o in objectives.split(",") if o.strip()]
    for o in names:
        if o not in OBJECTIVES:
            raise MtnasError(f"unknown objective {o!r}{did_you_mean(o, OBJECTIVES)}; valid: {', '.join(OBJECTIVES)}")
    space, bundle = load_resolved(space_arg)
    seed = space.seed if seed is None else seed
    trials = trials or space.search.trials
    dev = select_device(device)
    if not resume:
        run.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.root / "space.yaml", yaml.safe_dump(space.to_dict(), sort_keys=False))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        storage = f"journal:///{(run.root / 'journal.log').resolve()}" if workers > 1 else run.storage_url
    study_name = run.root.name
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        load_if_exists=resume,
        directions=[OBJECTIVES[o][0] for o in names],
        sampler=SAMPLERS.get(sampler)(seed),
    )
    if not resume:
        atomic_write_text(run.root / "run.json", json.dumps({
            "mtnas_version": __version__, "space": space.name, "seed": seed, "strategy": strategy,
            "objectives": names, "sampler": sampler, "trials": trials, "storage": storage,
            "study": study_name, "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }, indent=1))
        study.set_user_attr("mtnas", {"run_dir": str(run.root.resolve()), "seed": seed, "strategy": strategy,
                                      "objectives": names, "trials": trials, "space": space.to_dict()})
        for fixed in FIXED:
            study.enqueue_trial({}, user_attrs={"fixed_tree": fixed})
    baselines = compute_baselines(proxy_space(space), bundle, device=dev, seed=seed, progress=progress)
    atomic_write_text(run.root / "baselines.json", json.dumps(baselines.to_dict(), indent=1))
    helpers = [
        subprocess.Popen([sys.executable, "-m", "mtnas", "worker", "--storage", storage, "--study", study_name,
                          "--device", device, "--quiet"])
        for _ in range(workers - 1)
    ]
    ctx = {"run": run, "seed": seed, "device": dev, "strategy": strategy, "objectives": names}
    if workers > 0:  # 0: only create the study, for `mtnas worker` processes to run
        _optimize(study, space, bundle, baselines, ctx, trials, progress, timeout)
    dead = {p.pid: code for p in helpers if (code := p.wait())}
    if dead:
        # A local worker that died left its trial RUNNING: fail it now (no need to wait for its
        # heartbeat to go stale), then finish the count here.
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.user_attrs.get("pid") in dead:
                study._storage.set_trial_user_attr(t._trial_id, "fail_reason",
                                                   f"worker process {t.user_attrs['pid']} died (exit {dead[t.user_attrs['pid']]})")
                study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        if workers > 0:
            _optimize(study, space, bundle, baselines, ctx, trials, progress, timeout)
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        if done < trials:
            raise MtnasError(f"{len(dead)} of the worker processes failed; see their output above")
        print(f"warning: {len(dead)} worker process(es) ended with an error (exit {sorted(dead.values())}); "
              f"their trials were failed and the study holds {done} completed trials", file=sys.stderr)
    write_pareto(run, study)
    return run, study


def _optimize(study: optuna.Study, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines,
              ctx: dict, trials: int, progress: bool, timeout: float | None = None) -> None:
    """Run trials until the study holds ``trials`` completed ones (failed ones do not count)."""
    from tqdm.auto import tqdm

    complete = (optuna.trial.TrialState.COMPLETE,)
    done = len(study.get_trials(deepcopy=False, states=complete))
    if done >= trials:
        return
    # The bar counts completed trials of the whole study (other workers' too) against the target.
    with tqdm(total=trials, initial=done, desc="trials", unit="trial", disable=not progress) as bar:

        def advance(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            bar.update(len(study.get_trials(deepcopy=False, states=complete)) - bar.n)
            dm = trial.user_attrs.get("delta_m")
            if dm is not None:
                bar.set_postfix_str(f"last: {trial.user_attrs.get('tree', '')[:40]} delta-m {dm:+.2f}%")

        study.optimize(
            lambda t: _objective(t, space, bundle, baselines, ctx),
            callbacks=[optuna.study.MaxTrialsCallback(trials, states=complete), advance],
            catch=(NonFiniteLossError,),
            n_trials=trials - done + 2 * trials,  # room for failed trials; the callback stops at `trials`
            timeout=timeout,
        )


def run_worker(storage: str, study_name: str, *, device: str = "auto", progress: bool = False) -> optuna.Study:
    """Join the study ``study_name`` in ``storage`` and run trials until it holds enough."""
    from mtnas.space import space_from_dict

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise MtnasError(f"no study {study_name!r} in {storage}; start it with 'mtnas search'") from None
    config = study.user_attrs.get("mtnas")
    if config is None:
        raise MtnasError(f"study {study_name!r} was not created by 'mtnas search' (no mtnas settings)")
    space, bundle = load_resolved(space_from_dict(config["space"]))
    dev = select_device(device)
    baselines = compute_baselines(proxy_space(space), bundle, device=dev, seed=config["seed"], progress=progress)
    run = SearchRun(Path(config["run_dir"]))
    ctx = {"run": run, "seed": config["seed"], "device": dev, "strategy": config["strategy"],
           "objectives": config["objectives"]}
    _optimize(study, space, bundle, baselines, ctx, config["trials"], progress)
    return study


def write_pareto(run: SearchRun, study: optuna.Study) -> list[dict[str, Any]]:
    front = [
        {"trial": t.number, "tree_key": t.user_attrs.get("tree_key"), "tree": t.user_attrs.get("tree"),
         "objectives": list(t.values), "delta_m": t.user_attrs.get("delta_m"),
         "flops": t.user_attrs.get("flops"), "params": t.user_attrs.get("params")}
        for t in pareto(study)
    ]
    atomic_write_text(run.root / "pareto.json", json.dumps(front, indent=1))
    return front
