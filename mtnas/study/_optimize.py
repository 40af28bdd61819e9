"""``mtnas search`` and ``mtnas worker``: an Optuna study of sharing trees, quality against cost.

Each trial gets a tree from its strategy (``mtnas.study._strategies``), trains it briefly and is
scored by its objectives (``mtnas.study._objective``): maximise delta-m, minimise FLOPs (or
params). The all-shared and independent trees are enqueued first. The study lives in
``runs/NAME/study.db`` (SQLite), a journal file for ``--workers`` or an RDB server for workers on
other machines; every trial's files go to the study's artifact store (``mtnas.study._artifacts``).
A trial whose process died is failed and retried (``mtnas.study._liveness``), and the study ends
with exactly the requested number of completed trials.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import optuna
import yaml

from mtnas.core import MtnasError, atomic_write_text
from mtnas.core._version import __version__
from mtnas.data import DatasetBundle
from mtnas.search import check_search_space
from mtnas.space import SearchSpace, load_resolved, space_from_dict
from mtnas.study._artifacts import open_artifact_store
from mtnas.study._front import write_pareto
from mtnas.study._liveness import reap_dead_trials
from mtnas.study._objective import FIXED, evaluate_trial, proxy_space
from mtnas.study._objectives import OBJECTIVES, parse_objectives
from mtnas.study._progress import StudyProgress
from mtnas.study._pruning import check_pruner
from mtnas.study._run import SearchRun
from mtnas.study._storage import open_storage
from mtnas.study._strategies import SAMPLERS, STRATEGIES, TrialContext
from mtnas.train import Baselines, NonFiniteLossError, compute_baselines, select_device, use_cpu_threads

__all__ = ["RUN_NAME", "check_run_name", "run_search", "run_worker"]

#: A run name: one path segment of letters, digits, ``.``, ``_`` and ``-`` (it names the folder
#: under ``--runs-dir`` and the study).
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_run_name(name: str) -> str:
    """``name`` if it is a run name (see ``RUN_NAME``); else a one-line error saying what is allowed."""
    if not RUN_NAME.fullmatch(name or "") or name.endswith("."):
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise MtnasError(f"--name {shown!r}: a run name is one folder name of 1-100 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit (no '/', no '..')")
    return name


def _run_folder(runs_dir: str | Path, name: str) -> SearchRun:
    """The run folder ``runs_dir/name``, checked: always inside ``runs_dir``, which must be a folder."""
    base = Path(runs_dir)
    if base.exists() and not base.is_dir():
        raise MtnasError(f"--runs-dir {str(base)!r} is a file, not a folder")
    run = SearchRun(base / check_run_name(name))
    if run.root.exists() and not run.root.is_dir():
        raise MtnasError(f"{run.root} is a file, not a run folder; choose another --name")
    return run


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
    artifacts: str | None = None,
    timeout: float | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> tuple[SearchRun, optuna.Study]:
    """Create (or ``resume``) ``runs_dir/NAME`` and run the study until ``trials`` completed.

    ``space_arg`` is a built-in space name, a YAML path, or a ``SearchSpace`` (NAME defaults to
    its name).

    ``workers`` > 1 runs that many local processes on a journal file in the run folder (0 creates
    the study and returns, for ``mtnas worker`` processes to run);
    ``storage`` (an RDB URL such as ``postgresql://...``) keeps the study elsewhere, where
    ``mtnas worker`` processes on any machine can join it; ``artifacts`` (``s3://BUCKET``, or a
    folder; default ``runs/NAME/artifacts``) is where every trial's files go. ``timeout``
    (seconds) stops starting new trials after that wall time, so strategies can be compared at an
    equal budget. ``threads``: torch's CPU threads in each local process (None: ``MTNAS_THREADS``,
    ``OMP_NUM_THREADS``, else the physical cores divided among the ``workers``; see
    ``mtnas.train.cpu_threads``), recorded in ``run.json``.
    """
    for label, value, low in (("trials", trials, 1), ("workers", workers, 0)):
        if value is not None and value < low:
            raise MtnasError(f"{label} must be >= {low}, got {value}")
    if timeout is not None and not 0 < timeout < float("inf"):
        raise MtnasError(f"timeout must be a finite number of seconds > 0, got {timeout}")
    default_name = space_arg.name if isinstance(space_arg, SearchSpace) else Path(str(space_arg)).stem
    run = _run_folder(runs_dir, default_name if name is None else name)
    if resume:
        info = run.info()
        space_arg, strategy, seed = str(run.root / "space.yaml"), info["strategy"], info["seed"]
        objectives, trials, storage = ",".join(info["objectives"]), trials or info["trials"], run.storage()
        artifacts = info.get("artifacts", str((run.root / "artifacts").resolve()))
    elif (run.root / "run.json").exists():
        raise MtnasError(f"{run.root} exists already: use --resume to continue it, or another --name")
    STRATEGIES.get(strategy)
    names = parse_objectives(objectives)
    space, bundle = load_resolved(space_arg)
    check_search_space(space)
    pruner = check_pruner(space.search.pruner, names)
    seed = space.seed if seed is None else seed
    trials = trials or space.search.trials
    dev = select_device(device)
    cpu = use_cpu_threads(threads, workers=max(workers, 1))
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are in the trials' records, not on stderr
    if storage is None:
        storage = run.journal_url if workers > 1 else run.storage_url
    artifacts = artifacts or str((run.root / "artifacts").resolve())
    if not resume:
        try:
            run.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MtnasError(f"cannot create the run folder {run.root}: {exc.strerror}") from None
        open_artifact_store(artifacts, create=True)  # an unusable store is an error before any trial runs
        atomic_write_text(run.root / "space.yaml", yaml.safe_dump(space.to_dict(), sort_keys=False))
        # run.json first: a crash after it leaves a folder --resume can finish (it creates the study)
        atomic_write_text(run.root / "run.json", json.dumps({
            "mtnas_version": __version__, "space": space.name, "seed": seed, "strategy": strategy,
            "objectives": names, "sampler": sampler, "trials": trials, "storage": storage, "artifacts": artifacts,
            "study": run.root.name, "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **cpu.to_dict(),
        }, indent=1))
    study = optuna.create_study(
        study_name=run.root.name,
        storage=open_storage(storage),
        load_if_exists=True,  # a resumed run, or one whose first process died before its first trial
        directions=[OBJECTIVES.get(o).direction for o in names],
        sampler=SAMPLERS.get(sampler)(seed),
        pruner=pruner.optuna() if pruner is not None and pruner.optuna is not None else None,
    )
    if "mtnas" not in study.user_attrs:
        study.set_user_attr("mtnas", {"seed": seed, "strategy": strategy, "objectives": names, "trials": trials,
                                      "artifacts": artifacts, "space": space.to_dict()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)  # optuna-dashboard shows "delta_m", "flops", not "Objective 0"
    _enqueue_fixed_trees(study)
    baselines = compute_baselines(proxy_space(space), bundle, device=dev, seed=seed, progress=progress)
    atomic_write_text(run.root / "baselines.json", json.dumps(baselines.to_dict(), indent=1))
    helpers = [
        subprocess.Popen([sys.executable, "-m", "mtnas", "worker", "--storage", storage, "--study", run.root.name,
                          "--device", device, "--threads", str(cpu.count), "--quiet"])
        for _ in range(workers - 1)
    ]
    ctx = TrialContext(run=run, seed=seed, device=dev, strategy=strategy, objectives=tuple(names),
                       artifacts=artifacts, trials=trials)
    if trials <= len(FIXED):
        print(f"note: {trials} trial{'s' if trials != 1 else ''} hold only the enqueued reference trees "
              f"({', '.join(FIXED)}): no tree is searched; give --trials {len(FIXED) + 1} or more", file=sys.stderr)
    if workers > 0:  # 0: only create the study, for `mtnas worker` processes to run
        _optimize(study, space, bundle, baselines, ctx, progress, timeout)
    dead = {p.pid: code for p in helpers if (code := p.wait())}
    if dead:
        # A local worker that died left its trial RUNNING: fail and re-enqueue it now (no need to
        # wait for its heartbeat to go stale), then finish the count here.
        reap_dead_trials(study, reason="worker process {pid} died")
        if workers > 0:
            _optimize(study, space, bundle, baselines, ctx, progress, timeout)
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        if done < trials:
            raise MtnasError(f"{len(dead)} of the worker processes failed; see their output above")
        print(f"warning: {len(dead)} worker process(es) ended with an error (exit {sorted(dead.values())}); "
              f"their trials were retried and the study holds {done} completed trials", file=sys.stderr)
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if timeout is not None and workers > 0 and done < trials:
        print(f"note: --timeout {timeout:g}s stopped the search after {done} of {trials} trials; "
              f"'mtnas search --resume --name {run.root.name}' runs the rest", file=sys.stderr)
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
              ctx: TrialContext, progress: bool, timeout: float | None = None) -> None:
    """Run trials until the study holds ``ctx.trials`` completed ones (failed ones do not count)."""
    complete = (optuna.trial.TrialState.COMPLETE,)
    reap_dead_trials(study)  # a trial of a killed process on this host is retried at once
    done = len(study.get_trials(deepcopy=False, states=complete))
    if done >= ctx.trials:
        return
    with StudyProgress(study, ctx.trials, enabled=progress) as bar:  # trials, the running phase, an ETA
        ctx = replace(ctx, progress=progress, on_phase=bar.phase)
        study.optimize(
            lambda t: evaluate_trial(t, space, bundle, baselines, ctx),
            callbacks=[optuna.study.MaxTrialsCallback(ctx.trials, states=complete), bar.trial_done],
            catch=(NonFiniteLossError,),
            n_trials=ctx.trials - done + 2 * ctx.trials,  # room for failed trials; the callback stops at `trials`
            timeout=timeout,
        )


def run_worker(storage: str, study_name: str, *, device: str = "auto", progress: bool = False) -> optuna.Study:
    """Join the study ``study_name`` in ``storage`` and run trials until it holds enough.

    Nothing is written outside a temporary folder: each trial's files go to the study's artifact
    store, so a worker needs no disk shared with the machine that created the study.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise MtnasError(f"no study {study_name!r} in {storage}; start it with 'mtnas search'") from None
    config = study.user_attrs.get("mtnas")
    if not isinstance(config, dict) or not {"space", "seed", "strategy", "objectives", "trials"} <= set(config):
        raise MtnasError(f"study {study_name!r} was not created by 'mtnas search' (no mtnas settings)")
    space, bundle = load_resolved(check_search_space(space_from_dict(config["space"], f"study {study_name!r} space")))
    pruner = check_pruner(space.search.pruner, list(config["objectives"]))
    if pruner is not None and pruner.optuna is not None:  # a pruner belongs to the process's Study object
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage), pruner=pruner.optuna())
    dev = select_device(device)
    baselines = compute_baselines(proxy_space(space), bundle, device=dev, seed=config["seed"], progress=progress)
    artifacts = config.get("artifacts")
    if not artifacts:
        raise MtnasError(f"study {study_name!r} names no artifact store; it was made by an older mtnas")
    open_artifact_store(artifacts)  # reachable from here, before any trial runs
    with tempfile.TemporaryDirectory(prefix=f"mtnas-worker-{study_name}-") as scratch:
        ctx = TrialContext(run=SearchRun(Path(scratch)), seed=config["seed"], device=dev, strategy=config["strategy"],
                           objectives=tuple(config["objectives"]), artifacts=artifacts, trials=int(config["trials"]))
        _optimize(study, space, bundle, baselines, ctx, progress)
    return study
