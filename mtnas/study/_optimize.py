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

import contextlib
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import optuna
import yaml

from mtnas.core import MtnasError, atomic_write_text
from mtnas.core._version import __version__
from mtnas.data import DatasetBundle
from mtnas.search import check_search_space
from mtnas.space import SearchSpace, load_resolved, space_from_dict
from mtnas.study._artifacts import absolute_store, check_artifact_store
from mtnas.study._claim import check_not_starting, claim_new_run
from mtnas.study._front import write_pareto
from mtnas.study._liveness import finished_elsewhere, reap_dead_trials, settle
from mtnas.study._objective import FIXED, evaluate_trial, proxy_space
from mtnas.study._objectives import OBJECTIVES, parse_objectives
from mtnas.study._pool import STUDY_DRIVERS
from mtnas.study._progress import StudyProgress
from mtnas.study._pruning import check_pruner
from mtnas.study._records import check_settings
from mtnas.study._run import SearchRun, check_run_name
from mtnas.study._storage import MAX_LOCAL_WORKERS, absolute_url, file_path, mask_url, open_storage
from mtnas.study._strategies import SAMPLERS, STRATEGIES, TrialContext
from mtnas.study._study_store import StudyStore
from mtnas.study._tracking import trial_logging
from mtnas.train import (
    Baselines,
    Evidence,
    NonFiniteLossError,
    Tracking,
    check_trackers,
    select_device,
    tracking,
    use_cpu_threads,
)

__all__ = ["run_search", "run_worker", "space_digest", "worker_command"]


def _run_folder(runs_dir: str | Path, name: str) -> SearchRun:
    """The run folder ``runs_dir/name``, checked: always inside ``runs_dir``, which must be a folder."""
    if not str(runs_dir).strip():  # Path("") is the current folder: never chosen by an empty value
        raise MtnasError(f"--runs-dir {str(runs_dir)!r} is empty; give the folder where run folders live, e.g. "
                         "--runs-dir runs")
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
    log_to: Sequence[str] = (),
) -> tuple[SearchRun, optuna.Study]:
    """Create (or ``resume``) ``runs_dir/NAME`` and run the study until ``trials`` completed.

    ``space_arg`` is a built-in space name, a YAML path, or a ``SearchSpace`` (NAME defaults to
    its name).

    ``workers`` > 1 runs that many local processes on a journal file in the run folder (0 creates
    the study and returns, for ``mtnas worker`` processes to run);
    ``storage`` (an RDB URL such as ``postgresql://...``) keeps the study elsewhere, where
    ``mtnas worker`` processes on any machine can join it; ``artifacts`` (``s3://BUCKET``, or a
    folder; default ``runs/NAME/artifacts``) is where every trial's files go; a relative storage
    file or store folder is recorded as an absolute one. ``timeout`` (seconds) stops starting new
    trials after that wall time, in this process and in every local worker, so strategies can be
    compared at an equal budget. ``threads``: torch's CPU threads in each local process (None: ``MTNAS_THREADS``,
    ``OMP_NUM_THREADS``, else the physical cores divided among the ``workers``; see
    ``mtnas.train.cpu_threads``), recorded in ``run.json``. ``log_to``: trackers (tensorboard,
    mlflow) that get the trials, their trainings' curves and candidates, in ``runs/NAME/logs/``
    (``mtnas.study._tracking``).
    """
    log_to = check_trackers(log_to)  # a missing tracker package is an error before any work
    asked_trials = trials
    for label, value, low, high in (("trials", trials, 1, None), ("workers", workers, 0, MAX_LOCAL_WORKERS)):
        if value is not None and value < low:
            raise MtnasError(f"{label} must be >= {low}, got {value}")
        if value is not None and high is not None and value > high:
            raise MtnasError(f"{label} must be <= {high} (local processes on this machine), got {value}; for more, "
                             "start 'mtnas worker' processes on other machines")
    if timeout is not None and not 0 < timeout < float("inf"):
        raise MtnasError(f"timeout must be a finite number of seconds > 0, got {timeout}")
    default_name = space_arg.name if isinstance(space_arg, SearchSpace) else Path(str(space_arg)).stem
    run = _run_folder(runs_dir, default_name if name is None else name)
    study_name, unfinished = run.root.name, False
    if resume:  # everything as run.json records it: a copied or renamed folder resumes its own study
        unfinished = check_not_starting(run.root)  # a stale claim: its search never finished setting up
        info = run.resume_info()
        if storage is not None and absolute_url(storage) != info["storage"]:
            raise MtnasError(f"--storage {mask_url(storage)!r} is not the storage {mask_url(info['storage'])!r} "
                             f"that {run.root / 'run.json'} records; resume without --storage")
        space_arg, strategy, seed = str(run.root / "space.yaml"), info["strategy"], info["seed"]
        objectives, trials = ",".join(info["objectives"]), trials or info["trials"]
        storage = info["storage"] if storage is not None else run.storage()
        study_name = info["study"]
        setting_up: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:  # paths as absolute ones: every command and worker reads them from any folder
        storage = absolute_url(storage) if storage is not None else None
        artifacts = absolute_store(artifacts) if artifacts else str((run.root / "artifacts").resolve())
        setting_up = claim_new_run(run.root)  # before anything is read: one search per name
    with setting_up:  # a new run that fails to set up leaves nothing behind
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
        if not resume:
            check_artifact_store(artifacts, create=True)  # an unusable store is an error before any trial runs
            atomic_write_text(run.root / "space.yaml", yaml.safe_dump(space.to_dict(), sort_keys=False))
            # run.json before the study: a crash after it leaves a folder --resume can finish (it creates the study)
            atomic_write_text(run.root / "run.json", json.dumps({
                "mtnas_version": __version__, "space": space.name, "seed": seed, "strategy": strategy,
                "objectives": names, "sampler": sampler, "trials": trials, "storage": storage, "artifacts": artifacts,
                "study": study_name, "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **cpu.to_dict(),
            }, indent=1))
        opened = open_storage(storage, create=not resume or unfinished)
        if resume and not unfinished:  # set up: its study is there (run.json naming another is refused)
            _check_resumed_study(opened, study_name, run, storage)
        study = optuna.create_study(
            study_name=study_name,
            storage=opened,
            load_if_exists=True,  # a resumed run, or one whose first process died before its first trial
            directions=[OBJECTIVES.get(o).direction for o in names],
            sampler=SAMPLERS.get(sampler)(seed),
            pruner=pruner.optuna() if pruner is not None and pruner.optuna is not None else None,
        )
        stored = check_settings(study) if "mtnas" in study.user_attrs else None
        if resume:  # the store run.json names, if it is the folder's own or the study's
            artifacts = run.artifact_store(stored.get("artifacts") if stored is not None else None)
            check_artifact_store(artifacts)
        settings = {"seed": seed, "strategy": strategy, "objectives": names, "trials": trials, "artifacts": artifacts,
                    "space": space.to_dict(), "space_name": space.name, "space_digest": space_digest(space.to_dict())}
        if stored is not None:
            _check_same_search(study, settings, storage)
            if resume and stored.get("artifacts") != artifacts:  # a copied folder: its trials' files stay in it
                study.set_user_attr("mtnas", {**stored, "artifacts": artifacts})
        else:
            if study.get_trials(deepcopy=False):
                raise MtnasError(f"study {study_name!r} in {mask_url(storage)} holds trials but was not made by "
                                 "'mtnas search'; choose another --name")
            study.set_user_attr("mtnas", settings)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(names)  # optuna-dashboard shows "delta_m", "flops", not "Objective 0"
        _enqueue_fixed_trees(study)
    store = StudyStore(study._storage, study_name, artifacts)
    scope = Tracking(log_to, run.root / "logs", study_name) if log_to else None
    if scope is not None:
        scope.prepare()  # the stores exist before the local workers share them
    with tracking(scope.scope("baselines/") if scope is not None else None):
        baselines = Evidence(proxy_space(space), bundle, device=dev, store=store, progress=progress).baselines(seed)
    atomic_write_text(run.root / "baselines.json", json.dumps(baselines.to_dict(), indent=1))
    deadline = None if timeout is None else time.monotonic() + timeout  # one for every local process
    helpers = [subprocess.Popen(worker_command(storage, study_name, device, threads=cpu.count, timeout=timeout,
                                               log_to=log_to)) for _ in range(workers - 1)]
    ctx = TrialContext(run=run, seed=seed, device=dev, strategy=strategy, objectives=tuple(names),
                       artifacts=artifacts, trials=trials, store=store, tracking=scope)
    if strategy in STUDY_DRIVERS and asked_trials is not None and not resume:
        print(f"note: --trials does not apply to --strategy {strategy}: its trials are the candidates that "
              "search.budget pays for (--budget)", file=sys.stderr)
    if trials <= len(FIXED) and strategy not in STUDY_DRIVERS:
        print(f"note: {trials} trial{'s' if trials != 1 else ''} hold only the enqueued reference trees "
              f"({', '.join(FIXED)}): no tree is searched; give --trials {len(FIXED) + 1} or more", file=sys.stderr)
    if workers > 0:  # 0: only create the study, for `mtnas worker` processes to run
        _work(study, space, bundle, baselines, ctx, progress, deadline)
    dead = {p.pid: code for p in helpers if (code := p.wait())}
    if dead:
        # A local worker that died left its trial RUNNING: fail and re-enqueue it now (no need to
        # wait for its heartbeat to go stale), then finish the count here.
        reap_dead_trials(study, reason="worker process {pid} died")
        if workers > 0:
            _work(study, space, bundle, baselines, ctx, progress, deadline)
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        if done < trials:
            raise MtnasError(f"{len(dead)} of the worker processes failed; see their output above")
        print(f"warning: {len(dead)} worker process(es) ended with an error (exit {sorted(dead.values())}); "
              f"their trials were failed, and retried while the study needed them; it holds {done} completed "
              "trials", file=sys.stderr)
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if timeout is not None and workers > 0 and done < trials:
        print(f"note: --timeout {timeout:g}s stopped the search after {done} of {trials} trials; "
              f"'mtnas search --resume --name {run.root.name}' runs the rest", file=sys.stderr)
    write_pareto(run, study)
    return run, study


def _check_resumed_study(storage: optuna.storages.BaseStorage, study_name: str, run: SearchRun, url: str) -> None:
    """Refuse to resume a run whose study is not in its storage, as the commands that read it do:
    ``--resume`` continues a study, it never starts another (a run.json edited to name one)."""
    if study_name not in optuna.get_all_study_names(storage):
        raise MtnasError(f"{run.root}: the study {study_name!r} is missing from {mask_url(url)}; --resume continues "
                         f"the study that {run.root / 'run.json'} names and never starts one: restore its study, or "
                         "start a new run with another --name")


def _seconds_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``time.monotonic``; 0 once past), None without one."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def space_digest(space: dict) -> str:
    """A digest of a resolved space's content (its description aside): equal spaces, equal digests."""
    data = {k: v for k, v in space.items() if k != "description"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: The settings a search must share with the study it joins (the rest, e.g. the target count, may differ).
_SAME = (("space_digest", "space"), ("strategy", "strategy"), ("objectives", "objectives"))


def _check_same_search(study: optuna.Study, settings: dict, storage: str) -> None:
    """Refuse to join ``study`` with a search of another space, strategy or objectives: its trials
    would be scored against another space's baselines, or stored in another order."""
    stored = check_settings(study)
    if "space_digest" not in stored and isinstance(stored.get("space"), dict):  # a study of an older mtnas
        stored = {**stored, "space_digest": space_digest(stored["space"])}
    for key, what in _SAME:
        if stored.get(key) != settings[key]:
            if key == "space_digest":
                theirs, ours = stored.get("space_name", "?"), settings["space_name"]
                same = " of the same name and other content" if theirs == ours else ""
                detail = f"{theirs!r}{same} (digest {stored.get(key)}; this one {ours!r}, digest {settings[key]})"
            else:
                detail = f"{stored.get(key)!r} (this one {settings[key]!r})"
            raise MtnasError(f"study {study.study_name!r} in {mask_url(storage)} is a search of another {what}: "
                             f"{detail}; choose another --name, or join it with 'mtnas worker'")


def worker_command(storage: str, study: str, device: str = "auto", threads: int | None = None,
                   timeout: float | None = None, log_to: Sequence[str] = ()) -> list[str]:
    """The command line of a local worker process (``mtnas worker``), with ``threads`` CPU threads,
    starting no trial after ``timeout`` seconds (the search's ``--timeout``, which binds every process).

    The current directory is not on its import path (``python -P``; on Python 3.10, a bootstrap
    that removes it first), as it is not for the ``mtnas`` command: a ``yaml.py`` or ``optuna.py``
    in the folder a search starts in is never imported. Plugin modules reach the worker only by
    name, through ``MTNAS_PLUGINS`` (``--plugins``).
    """
    args = ["worker", "--storage", storage, "--study", study, "--device", device, "--quiet"]
    if threads is not None:
        args += ["--threads", str(threads)]
    if timeout is not None:
        args += ["--timeout", repr(float(timeout))]
    if log_to:
        args += ["--log-to", ",".join(log_to)]
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", "mtnas", *args]
    bootstrap = "import sys; sys.path.pop(0); from mtnas.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", bootstrap, *args]


def _enqueue_fixed_trees(study: optuna.Study) -> None:
    """Enqueue each fixed tree (all-shared, independent) that no trial has completed or will run:
    a new study gets both; a resumed one re-runs those that failed or were interrupted."""
    live = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    held = {t.user_attrs.get("fixed_tree") for t in study.get_trials(deepcopy=False, states=live)}
    for fixed in FIXED:
        if fixed not in held:
            study.enqueue_trial({}, user_attrs={"fixed_tree": fixed})


def _work(study: optuna.Study, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines, ctx: TrialContext,
          progress: bool, deadline: float | None) -> None:
    """This process's work on the study: trials until it holds ``ctx.trials`` completed ones, or,
    for a strategy that makes the trials itself (``STUDY_DRIVERS``), that strategy's run."""
    if ctx.strategy in STUDY_DRIVERS:
        STUDY_DRIVERS.get(ctx.strategy)(
            study, space, bundle, baselines, replace(ctx, progress=progress),
            lambda n: optimize_trials(study, space, bundle, baselines, replace(ctx, trials=n), progress))
    else:
        optimize_trials(study, space, bundle, baselines, ctx, progress, deadline)


def optimize_trials(study: optuna.Study, space: SearchSpace, bundle: DatasetBundle, baselines: Baselines,
              ctx: TrialContext, progress: bool, deadline: float | None = None) -> None:
    """Run trials until the study holds ``ctx.trials`` completed ones (failed ones do not count),
    starting none after ``deadline`` (``time.monotonic``)."""
    complete = (optuna.trial.TrialState.COMPLETE,)
    done = len(study.get_trials(deepcopy=False, states=complete))
    if done >= ctx.trials:
        settle(study, ctx.trials)  # no trial of a dead process is left RUNNING
        return
    reap_dead_trials(study)  # a trial of a killed process on this host is retried at once
    with StudyProgress(study, ctx.trials, enabled=progress) as bar, \
            trial_logging(ctx.tracking, ctx.objectives) as (logged, log_callbacks):  # trials, phase, ETA; --log-to
        ctx = replace(ctx, progress=progress, on_phase=bar.phase)
        while True:
            try:
                study.optimize(
                    logged(lambda t: evaluate_trial(t, space, bundle, baselines, ctx)),
                    callbacks=[optuna.study.MaxTrialsCallback(ctx.trials, states=complete), bar.trial_done,
                               *log_callbacks],
                    catch=(NonFiniteLossError,),
                    n_trials=ctx.trials - done + 2 * ctx.trials,  # room for failed trials; the callback stops at `trials`
                    timeout=_seconds_left(deadline),
                )
                break
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as exc:
                if not finished_elsewhere(exc):
                    raise
                # Another process failed this trial (its heartbeat went stale on a busy machine) and
                # enqueued its retry: the study lost nothing; this process goes on with another trial.
    settle(study, ctx.trials)


def run_worker(storage: str, study_name: str, *, device: str = "auto", timeout: float | None = None,
               progress: bool = False, log_to: Sequence[str] = ()) -> optuna.Study:
    """Join the study ``study_name`` in ``storage`` and run trials until it holds enough, starting
    none after ``timeout`` seconds from now.

    Nothing is written outside a temporary folder: each trial's files go to the study's artifact
    store, so a worker needs no disk shared with the machine that created the study. With
    ``log_to`` (trackers) its curves go to the log folder of the run folder that holds the
    study's file storage, else to ``runs/STUDY/logs/`` here.
    """
    log_to = check_trackers(log_to)
    deadline = None if timeout is None else time.monotonic() + timeout
    check_run_name(study_name, "--study")  # it names the worker's scratch folder too
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage, create=False))
    except KeyError:
        raise MtnasError(f"no study {study_name!r} in {mask_url(storage)}; start it with 'mtnas search'") from None
    config = check_settings(study)
    if not {"space", "seed", "strategy", "objectives", "trials"} <= set(config):
        raise MtnasError(f"study {study_name!r} was not created by 'mtnas search' (no mtnas settings)")
    artifacts = config.get("artifacts")
    if not artifacts:
        raise MtnasError(f"study {study_name!r} names no artifact store; it was made by an older mtnas")
    check_artifact_store(artifacts)  # reachable and writable from here, before any trial runs
    space, bundle = load_resolved(check_search_space(space_from_dict(config["space"], f"study {study_name!r} space")))
    pruner = check_pruner(space.search.pruner, list(config["objectives"]))
    if pruner is not None and pruner.optuna is not None:  # a pruner belongs to the process's Study object
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage, create=False), pruner=pruner.optuna())
    dev = select_device(device)
    store = StudyStore(study._storage, study_name, artifacts)
    folder = file_path(storage)  # a local worker's study file lies in its run folder
    scope = Tracking(log_to, (Path(folder).parent if folder else Path("runs") / study_name) / "logs",
                     study_name) if log_to else None
    if scope is not None:
        scope.prepare()
    with tracking(scope.scope("baselines/") if scope is not None else None):
        baselines = Evidence(proxy_space(space), bundle, device=dev, store=store, progress=progress).baselines(config["seed"])
    with tempfile.TemporaryDirectory(prefix=f"mtnas-worker-{study_name}-") as scratch:
        ctx = TrialContext(run=SearchRun(Path(scratch)), seed=config["seed"], device=dev, strategy=config["strategy"],
                           objectives=tuple(config["objectives"]), artifacts=artifacts, trials=int(config["trials"]),
                           store=store, tracking=scope)
        _work(study, space, bundle, baselines, ctx, progress, deadline)
    return study
