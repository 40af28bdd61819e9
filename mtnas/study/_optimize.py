"""``mtnas search`` and ``mtnas worker``: an Optuna study of sharing trees, quality against cost.

Each trial gets a tree from its strategy (``mtnas.study._strategies``), trains it briefly and is
scored by its objectives (``mtnas.study._objective``): maximise delta-m, minimise FLOPs (or
params). The all-shared and independent trees are enqueued first. The study lives in
``runs/NAME/study.db`` (SQLite), a journal file for ``--workers`` or an RDB server for workers on
other machines, with heartbeats (see ``mtnas.study._storage``), so a killed run's trial is
failed and retried on ``--resume`` or by any process still running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import yaml

from mtnas.core import MtnasError, __version__, atomic_write_text
from mtnas.data import DatasetBundle
from mtnas.search import check_search_space
from mtnas.space import SearchSpace, load_resolved, space_from_dict
from mtnas.study._front import write_pareto
from mtnas.study._liveness import reap_dead_trials
from mtnas.study._objective import FIXED, evaluate_trial, proxy_space
from mtnas.study._objectives import OBJECTIVES, parse_objectives
from mtnas.study._run import SearchRun
from mtnas.study._storage import open_storage
from mtnas.study._strategies import SAMPLERS, STRATEGIES, TrialContext
from mtnas.train import Baselines, NonFiniteLossError, compute_baselines, select_device

__all__ = ["run_search", "run_worker"]


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
    names = parse_objectives(objectives)
    space, bundle = load_resolved(space_arg)
    check_search_space(space)
    seed = space.seed if seed is None else seed
    trials = trials or space.search.trials
    dev = select_device(device)
    if not resume:
        run.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.root / "space.yaml", yaml.safe_dump(space.to_dict(), sort_keys=False))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        storage = run.journal_url if workers > 1 else run.storage_url
    study_name = run.root.name
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        load_if_exists=resume,
        directions=[OBJECTIVES.get(o).direction for o in names],
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)  # optuna-dashboard shows "delta_m", "flops", not "Objective 0"
    _enqueue_fixed_trees(study)
    baselines = compute_baselines(proxy_space(space), bundle, device=dev, seed=seed, progress=progress)
    atomic_write_text(run.root / "baselines.json", json.dumps(baselines.to_dict(), indent=1))
    helpers = [
        subprocess.Popen([sys.executable, "-m", "mtnas", "worker", "--storage", storage, "--study", study_name,
                          "--device", device, "--quiet"])
        for _ in range(workers - 1)
    ]
    ctx = TrialContext(run=run, seed=seed, device=dev, strategy=strategy, objectives=tuple(names))
    if workers > 0:  # 0: only create the study, for `mtnas worker` processes to run
        _optimize(study, space, bundle, baselines, ctx, trials, progress, timeout)
    dead = {p.pid: code for p in helpers if (code := p.wait())}
    if dead:
        # A local worker that died left its trial RUNNING: fail and re-enqueue it now (no need to
        # wait for its heartbeat to go stale), then finish the count here.
        reap_dead_trials(study, reason="worker process {pid} died")
        if workers > 0:
            _optimize(study, space, bundle, baselines, ctx, trials, progress, timeout)
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        if done < trials:
            raise MtnasError(f"{len(dead)} of the worker processes failed; see their output above")
        print(f"warning: {len(dead)} worker process(es) ended with an error (exit {sorted(dead.values())}); "
              f"their trials were failed and the study holds {done} completed trials", file=sys.stderr)
    write_pareto(run, study)
    return run, study


def _enqueue_fixed_trees(study: optuna.Study) -> None:
    """Enqueue each fixed tree (all-shared, independent) that no trial has completed or will run:
    a new study gets both; a resumed one re-runs those that failed or were interrupted."""
    live = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    held = {t.user_attrs.get("fixed_tree") for t in study.get_trials(deepcopy=False, states=live)}
    for fixed in FIXED:
        if fixed not in held:
            study.enqueue_trial({}, user_attrs={"fixed_tree": fixed})


def _optimize(study: optuna.Study, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines,
              ctx: TrialContext, trials: int, progress: bool, timeout: float | None = None) -> None:
    """Run trials until the study holds ``trials`` completed ones (failed ones do not count)."""
    from tqdm.auto import tqdm

    complete = (optuna.trial.TrialState.COMPLETE,)
    reap_dead_trials(study)  # a trial of a killed process on this host is retried at once
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
            lambda t: evaluate_trial(t, space, bundle, baselines, ctx),
            callbacks=[optuna.study.MaxTrialsCallback(trials, states=complete), advance],
            catch=(NonFiniteLossError,),
            n_trials=trials - done + 2 * trials,  # room for failed trials; the callback stops at `trials`
            timeout=timeout,
        )


def run_worker(storage: str, study_name: str, *, device: str = "auto", progress: bool = False) -> optuna.Study:
    """Join the study ``study_name`` in ``storage`` and run trials until it holds enough."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise MtnasError(f"no study {study_name!r} in {storage}; start it with 'mtnas search'") from None
    config = study.user_attrs.get("mtnas")
    if config is None:
        raise MtnasError(f"study {study_name!r} was not created by 'mtnas search' (no mtnas settings)")
    space, bundle = load_resolved(check_search_space(space_from_dict(config["space"], f"study {study_name!r} space")))
    dev = select_device(device)
    baselines = compute_baselines(proxy_space(space), bundle, device=dev, seed=config["seed"], progress=progress)
    ctx = TrialContext(run=SearchRun(Path(config["run_dir"])), seed=config["seed"], device=dev,
                       strategy=config["strategy"], objectives=tuple(config["objectives"]))
    _optimize(study, space, bundle, baselines, ctx, config["trials"], progress)
    return study
