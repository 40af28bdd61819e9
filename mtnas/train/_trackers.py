"""Training curves in the trackers people already watch: TensorBoard and MLflow (``--log-to``).

A tracker is a registry entry (``TRACKERS``): the extra that installs it, the modules it imports,
and how it opens a :class:`Tracker` on its folder of a log folder (``runs/NAME/logs/tensorboard``,
``runs/NAME/logs/mlflow``). A ``Tracker`` holds one run: ``start`` it under a name, ``log_scalars``
at a step, ``end`` it. Every write is flushed before ``log_scalars`` returns, so a crash loses
nothing logged.

A command that logs makes a :class:`Tracking` (the trackers, the log folder, the experiment) and
activates it around the work with :func:`tracking`; every training run by ``train_model`` inside
(the search's units of evidence, baselines, proxy trainings) writes its per-epoch curves to it.
The search and the engine never take a tracker argument: a training deep inside a search method
cannot be handed one, so the scope is a ``contextvars`` variable, set and reset by a ``with``
block (as ``torch.autocast`` is), never a module global. ``Tracking.scope`` prefixes the run
names of a part of the work (``trial-0007/``, ``baselines/``).

Layout under the log folder (see the README)::

    tensorboard/RUN/events.out.tfevents.*     one folder per run (RUN may hold '/': trial-0007/tree-KEY)
    mlflow/mlflow.db, mlflow/artifacts/       an MLflow SQLite store; a run per RUN (tag mtnas_run)

MLflow's own file store (``file:`` URIs) is refused by MLflow 3 unless ``MLFLOW_ALLOW_FILE_STORE``
is set, so the local store is the SQLite file MLflow recommends.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from mtnas.core import MtnasError, Registry

if TYPE_CHECKING:
    from mtnas.tree import BranchingTree

__all__ = [
    "TRACKERS",
    "RunLog",
    "TrackedRun",
    "Tracker",
    "TrackerType",
    "Tracking",
    "active_tracking",
    "check_trackers",
    "epoch_scalars",
    "mlflow_uri",
    "run_name",
    "training_logs",
    "tracking",
]

#: The longest tag value written (MLflow keeps at most 8000 characters; older versions 5000).
TAG_MAX_CHARS = 5000


class Tracker(Protocol):
    """One run of one tracker."""

    def start(self, run: str, tags: Mapping[str, str]) -> None:
        """Open run ``run`` (continue it when the log folder holds one of that name) with ``tags``."""

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        """Log ``scalars`` (name -> value) at ``step``, written to disk before returning."""

    def end(self, failed: bool = False) -> None:
        """Close the run (``failed``: the work it logged raised)."""


@dataclass(frozen=True)
class TrackerType:
    """A registered tracker: what installs it and how it opens a run.

    Attributes:
        extra: the ``mtnas[EXTRA]`` that installs it.
        modules: what it imports (checked before any work starts).
        open: ``open(folder, experiment)``: a fresh, not yet started :class:`Tracker` writing under
            ``folder`` (the tracker's own folder of the log folder).
        prepare: ``prepare(folder, experiment)``: create the store once, before processes share it.
    """

    extra: str
    modules: tuple[str, ...]
    open: Callable[[Path, str], Tracker]
    prepare: Callable[[Path, str], None] | None = None


TRACKERS: Registry[TrackerType] = Registry("tracker")


def check_trackers(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` (each registered and installed, duplicates dropped), or one error line naming the
    extra to install."""
    out: list[str] = []
    for name in names:
        entry = TRACKERS.get(name)
        for module in entry.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                raise MtnasError(f"--log-to {name} needs the {module!r} package: pip install 'mtnas[{entry.extra}]'"
                                 ) from None
        if name not in out:
            out.append(name)
    return tuple(out)


# --- the runs of a command -------------------------------------------------------------------------


def _tag_text(value: object) -> str:
    text = str(value)
    return text if len(text) <= TAG_MAX_CHARS else text[: TAG_MAX_CHARS - 3] + "..."


class RunLog:
    """One run open in every tracker of a :class:`Tracking`; ``tasks`` maps the training's task keys
    to the names its curves show (None: every key as it is)."""

    def __init__(self, name: str, trackers: Sequence[Tracker], tasks: Mapping[str, str] | None = None) -> None:
        self.name, self.trackers, self.tasks = name, list(trackers), tasks

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        values = {k: float(v) for k, v in scalars.items()}
        for tracker in self.trackers:
            tracker.log_scalars(values, step)

    def log_epoch(self, epoch: int, losses: Mapping[str, float], val: Mapping[str, Mapping[str, float]] | None,
                  lr: float | None = None, **extra: float) -> None:
        """One epoch's curves (:func:`epoch_scalars`) at step ``epoch``."""
        self.log({**epoch_scalars(losses, val, tasks=self.tasks, lr=lr), **extra}, epoch)

    def end(self, failed: bool = False) -> None:
        for tracker in self.trackers:
            tracker.end(failed)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.end(failed=kind is not None)


def epoch_scalars(losses: Mapping[str, float], val: Mapping[str, Mapping[str, float]] | None, *,
                  tasks: Mapping[str, str] | None = None, lr: float | None = None) -> dict[str, float]:
    """The scalars of one epoch: ``loss/TASK`` (mean training loss), ``loss/total`` (their sum),
    ``val/TASK/METRIC`` and ``lr`` (the learning rate the epoch started with). ``tasks`` maps the
    keys of ``losses`` and ``val`` to the task names shown (default: every key of ``losses``)."""
    tasks = tasks if tasks is not None else {t: t for t in losses}
    out = {f"loss/{shown}": float(losses[key]) for key, shown in tasks.items() if key in losses}
    out["loss/total"] = sum(out.values())
    for key, shown in tasks.items():
        for metric, value in (val or {}).get(key, {}).items():
            out[f"val/{shown}/{metric}"] = float(value)
    if lr is not None:
        out["lr"] = float(lr)
    return out


@dataclass
class Tracking:
    """Where a command's curves go: the trackers by name, the log folder, the experiment (MLflow's;
    a search's is its study's name), the prefix of this scope's run names and their common tags."""

    names: tuple[str, ...]
    root: Path
    experiment: str
    prefix: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    _opened: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # run name -> times opened here

    def __post_init__(self) -> None:
        self.names, self.root = tuple(self.names), Path(self.root)
        for name in self.names:
            TRACKERS.get(name)

    def prepare(self) -> None:
        """Create every tracker's store (before processes that share the log folder start)."""
        for name in self.names:
            entry = TRACKERS.get(name)
            if entry.prepare is not None:
                entry.prepare(self.root / name, self.experiment)

    def scope(self, prefix: str, **tags: str) -> Tracking:
        """A scope whose runs are named ``PREFIX...`` and carry ``tags`` as well."""
        return Tracking(self.names, self.root, self.experiment, self.prefix + prefix, {**self.tags, **tags})

    def only(self, name: str) -> Tracking:
        """This scope with tracker ``name`` alone."""
        return Tracking((name,), self.root, self.experiment, self.prefix, dict(self.tags))

    def open(self, run: str, tags: Mapping[str, object] | None = None, tasks: Mapping[str, str] | None = None) -> RunLog:
        """Start run ``PREFIX + run`` in every tracker; a name opened before in this scope (a tree
        trained twice in one trial) gets ``-2``, ``-3``, ..."""
        name = self.prefix + run
        self._opened[name] = count = self._opened.get(name, 0) + 1
        if count > 1:
            name = f"{name}-{count}"
        all_tags = {k: _tag_text(v) for k, v in {**self.tags, **(tags or {})}.items()}
        trackers = []
        try:
            for tracker_name in self.names:
                tracker = TRACKERS.get(tracker_name).open(self.root / tracker_name, self.experiment)
                tracker.start(name, all_tags)
                trackers.append(tracker)
        except BaseException:
            for tracker in trackers:
                tracker.end(failed=True)
            raise
        return RunLog(name, trackers, tasks)


_ACTIVE: ContextVar[Tracking | None] = ContextVar("mtnas_tracking", default=None)


@contextlib.contextmanager
def tracking(scope: Tracking | None) -> Iterator[Tracking | None]:
    """Within the block, trainings log to ``scope`` (None: to nothing)."""
    token = _ACTIVE.set(scope)
    try:
        yield scope
    finally:
        _ACTIVE.reset(token)


def active_tracking() -> Tracking | None:
    """The scope of the innermost :func:`tracking` block, None outside one."""
    return _ACTIVE.get()


class TrackedRun(NamedTuple):
    """A run one training writes: its name, the training's task keys it shows (key -> task name
    shown; None: all, as they are) and its tags."""

    name: str
    tasks: Mapping[str, str] | None = None
    tags: Mapping[str, str] = {}

    @classmethod
    def of_tree(cls, tree: BranchingTree, tasks: Mapping[str, str] | None = None) -> TrackedRun:
        """A tree's training: run ``tree-KEY`` (its canonical hash), its description as tag ``tree``."""
        return cls(f"tree-{tree.key}", tasks, {"tree": tree.describe()})


def run_name(text: str) -> str:
    """``text`` as a run name: letters, digits, ``.``, ``_``, ``-`` (at most 60)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "training"


@contextlib.contextmanager
def training_logs(runs: Sequence[TrackedRun], **tags: object) -> Iterator[list[RunLog]]:
    """The runs of one training in the active scope (none outside one), each with ``tags`` too,
    ended on leaving the block (failed when the training raised)."""
    scope = active_tracking()
    if scope is None:
        yield []
        return
    logs: list[RunLog] = []
    try:
        for run in runs:
            logs.append(scope.open(run.name, {**tags, **run.tags}, run.tasks))
        yield logs
    except BaseException:
        for log in logs:
            log.end(failed=True)
        raise
    for log in logs:
        log.end()


# --- TensorBoard -----------------------------------------------------------------------------------


class _TensorBoard:
    """A run is a folder of event files (``torch.utils.tensorboard.SummaryWriter``); tags are a
    text summary ``tags`` at step 0."""

    def __init__(self, folder: Path, experiment: str) -> None:
        self.folder, self.writer = folder, None

    def start(self, run: str, tags: Mapping[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.folder / run))
        if tags:
            self.writer.add_text("tags", "\n\n".join(f"**{k}**: {v}" for k, v in tags.items()), 0)
            self.writer.flush()

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def end(self, failed: bool = False) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


TRACKERS.add("tensorboard", TrackerType("tensorboard", ("tensorboard",), _TensorBoard))


# --- MLflow --------------------------------------------------------------------------------------------


def mlflow_uri(folder: str | Path) -> str:
    """The tracking URI of the MLflow store in ``folder``: ``sqlite:////ABS/FOLDER/mlflow.db``."""
    return f"sqlite:///{(Path(folder) / 'mlflow.db').resolve()}"


@functools.lru_cache(maxsize=8)
def _mlflow_client(uri: str) -> Any:
    import logging
    import warnings

    from mlflow.tracking import MlflowClient

    for name in ("mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    with warnings.catch_warnings():  # SQLAlchemy's deprecation notes about MLflow's own mappers (on first use)
        warnings.simplefilter("ignore")
        return MlflowClient(tracking_uri=uri)  # creates the database


def _mlflow_experiment(folder: Path, experiment: str) -> tuple[Any, str]:
    """The client of ``folder``'s store and the id of ``experiment`` in it (created, with its
    artifacts in ``folder/artifacts``, when missing)."""
    from mlflow.exceptions import MlflowException

    folder.mkdir(parents=True, exist_ok=True)
    client = _mlflow_client(mlflow_uri(folder))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            return client, client.create_experiment(experiment, artifact_location=(folder / "artifacts").resolve().as_uri())
        except MlflowException:  # another process created it meanwhile
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
    return client, found.experiment_id


class _MLflow:
    """A run of the experiment; run name and tag ``mtnas_run`` are the run's name. Inside an active
    MLflow run of the same experiment (a trial's, opened by Optuna's ``MLflowCallback``) it is a
    child of that run."""

    def __init__(self, folder: Path, experiment: str) -> None:
        self.folder, self.experiment, self.run_id = folder, experiment, None

    def start(self, run: str, tags: Mapping[str, str]) -> None:
        import mlflow

        self.client, experiment_id = _mlflow_experiment(self.folder, self.experiment)
        quoted = run.replace("\\", "\\\\").replace("'", "\\'")
        earlier = self.client.search_runs([experiment_id], filter_string=f"tags.mtnas_run = '{quoted}'", max_results=1)
        if earlier:  # a resumed retrain: its curves go on in the same run
            self.run_id = earlier[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            return
        parent = mlflow.active_run()
        extra = {"mlflow.parentRunId": parent.info.run_id} if parent and parent.info.experiment_id == experiment_id else {}
        self.run_id = self.client.create_run(experiment_id, run_name=run, tags={**tags, **extra, "mtnas_run": run}
                                             ).info.run_id

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in scalars.items()])

    def end(self, failed: bool = False) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")
            self.run_id = None


def _prepare_mlflow(folder: Path, experiment: str) -> None:
    _mlflow_experiment(folder, experiment)


TRACKERS.add("mlflow", TrackerType("mlflow", ("mlflow", "optuna_integration.mlflow"), _MLflow, _prepare_mlflow))
