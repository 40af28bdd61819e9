"""A search in TensorBoard and MLflow (``--log-to``): its trials, each trial's trainings and candidates.

The trainings log themselves (``mtnas.train.tracking``): each trial runs inside the scope
``trial-NNNN/`` of the search's :class:`~mtnas.train.Tracking`, the baselines inside ``baselines/``.
What belongs to the study is here, one entry per tracker in ``TRIAL_LOGGERS``:

- ``mlflow``: Optuna's own integration, ``optuna_integration.MLflowCallback``: a run per trial
  (named by its number) with the objectives as metrics, the sampled hyperparameters as params and
  the trial's attributes as tags; its ``track_in_mlflow`` opens that run when the trial starts, so
  the trial's trainings become its child runs.
- ``tensorboard``: optuna-integration's ``TensorBoardCallback`` needs TensorFlow and logs one
  objective (``trial.value``), which a multi-objective study has not; so the run ``trials`` holds
  ``trial/OBJECTIVE`` at step = trial number, for every completed trial.

:func:`log_candidates` logs what a trained search compared (its ``candidates.json``) in the run
``candidates`` of the trial's scope.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from mtnas.core import Registry, load_json_text, read_text_file
from mtnas.train._trackers import Tracking, active_tracking, mlflow_uri, tracking

__all__ = ["TRIAL_LOGGERS", "TrialLogger", "log_candidates", "trial_logging"]

Objective = Callable[[optuna.Trial], Any]
Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


@dataclass(frozen=True)
class TrialLogger:
    """How one tracker follows a study's trials: ``wrap`` the objective, a ``callback`` after each
    trial, ``close`` at the end (each optional)."""

    wrap: Callable[[Objective], Objective] | None = None
    callback: Callback | None = None
    close: Callable[[], None] | None = None


#: tracker name -> ``make(tracking, objective names)``: its :class:`TrialLogger`
TRIAL_LOGGERS: Registry[Callable[[Tracking, Sequence[str]], TrialLogger]] = Registry("tracker")


@TRIAL_LOGGERS.register("tensorboard")
def _tensorboard_trials(scope: Tracking, objectives: Sequence[str]) -> TrialLogger:
    log = scope.only("tensorboard").open("trials")

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.values is not None:
            log.log({f"trial/{name}": value for name, value in zip(objectives, trial.values)}, trial.number)

    return TrialLogger(callback=callback, close=log.end)


@TRIAL_LOGGERS.register("mlflow")
def _mlflow_trials(scope: Tracking, objectives: Sequence[str]) -> TrialLogger:
    from optuna_integration.mlflow import MLflowCallback

    with warnings.catch_warnings():  # deprecated in optuna-integration 4.9 (to move to OptunaHub); pinned < 6
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = MLflowCallback(tracking_uri=mlflow_uri(scope.root / "mlflow"), metric_name=list(objectives))
        wrap = callback.track_in_mlflow()
    return TrialLogger(wrap=wrap, callback=callback)


@contextlib.contextmanager
def trial_logging(scope: Tracking | None, objectives: Sequence[str]
                  ) -> Iterator[tuple[Callable[[Objective], Objective], list[Callback]]]:
    """``(wrap, callbacks)`` for ``study.optimize``: ``wrap(objective)`` runs each trial inside the
    scope ``trial-NNNN/`` (and each tracker's own wrapper); the callbacks log the finished trials.
    Without a scope: the objective as it is, no callback."""
    if scope is None:
        yield (lambda objective: objective), []
        return
    loggers = [TRIAL_LOGGERS.get(name)(scope, objectives) for name in scope.names]

    def wrap(objective: Objective) -> Objective:
        def scoped(trial: optuna.Trial) -> Any:
            with tracking(scope.scope(f"trial-{trial.number:04d}/", trial=str(trial.number))):
                return objective(trial)

        for logger in loggers:
            if logger.wrap is not None:
                scoped = logger.wrap(scoped)
        return scoped

    try:
        yield wrap, [logger.callback for logger in loggers if logger.callback is not None]
    finally:
        for logger in loggers:
            if logger.close is not None:
                logger.close()


def log_candidates(path: str | Path) -> None:
    """The trees a trained search compared (``candidates.json``) in the run ``candidates`` of the
    active scope (nothing outside one): at step i the i-th tree of the file (best first)
    ``candidate/score``, ``candidate/delta_m``, ``candidate/cost``, ``candidate/epochs``; the
    chosen tree and the numbered trees as tags."""
    scope = active_tracking()
    if scope is None:
        return
    data = load_json_text(read_text_file(path, "candidates file", 16 << 20), str(path))
    rows = [r for r in data.get("trees", []) if isinstance(r, dict)]
    trees = "\n".join(f"{i}: {r.get('tree')}" for i, r in enumerate(rows))
    with scope.open("candidates", {"chosen": data.get("chosen", ""), "trees": trees}) as log:
        for i, row in enumerate(rows):
            log.log({f"candidate/{key}": float(row[key]) for key in ("score", "delta_m", "cost", "epochs")
                     if isinstance(row.get(key), (int, float))}, i)
