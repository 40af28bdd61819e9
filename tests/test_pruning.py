"""Pruning a trial's proxy training: the front rule, Optuna's pruners in single-objective studies,
and the checks of ``search.pruner``."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
import yaml

from mtnas.core import ConfigError
from mtnas.study import FRONT_MARGIN, check_pruner, epoch_monitor, run_search
from tests.conftest import write_tiny_space


def _study_with(curve: list[float], flops: float) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["delta_m", "flops"])
    study.add_trial(optuna.trial.create_trial(values=[curve[-1], flops], user_attrs={"curve": curve}))
    return study


@pytest.mark.parametrize("cost, mine, pruned", [
    (200.0, 5.0 - FRONT_MARGIN - 0.5, True),   # dearer and clearly behind at epoch 1
    (200.0, 5.0 - FRONT_MARGIN + 0.5, False),  # behind, but within the margin
    (50.0, 0.0, False),                         # cheaper: the completed trial does not dominate it
])
def test_the_front_rule_prunes_only_clearly_dominated_trials(cost: float, mine: float, pruned: bool) -> None:
    study = _study_with([5.0, 6.0, 7.0], flops=100.0)
    trial = study.ask()
    monitor = epoch_monitor(trial, "front", cost, lambda val: val["dm"])
    if pruned:
        with pytest.raises(optuna.TrialPruned, match="pruned at epoch 1"):
            monitor(1, {"dm": mine})
    else:
        monitor(1, {"dm": mine})
    assert trial.study.trials[-1].user_attrs["curve"] == [mine]


def test_the_front_rule_looks_only_at_rungs() -> None:
    study = _study_with([5.0, 6.0, 9.0, 9.0], flops=100.0)
    monitor = epoch_monitor(study.ask(), "front", 200.0, lambda val: val["dm"])
    monitor(1, {"dm": 4.5})
    monitor(2, {"dm": 5.5})
    monitor(3, {"dm": 0.0})  # epoch 3 is no rung: far behind, not pruned there
    with pytest.raises(optuna.TrialPruned):
        monitor(4, {"dm": 0.0})


def test_pruner_names_and_fit_are_checked() -> None:
    assert check_pruner(None, ["delta_m", "flops"]) is None
    assert check_pruner("front", ["delta_m", "flops"]).optuna is None
    with pytest.raises(ConfigError, match="did you mean 'median'"):
        check_pruner("medain", ["delta_m"])
    with pytest.raises(ConfigError, match="refuse multi-objective studies"):
        check_pruner("median", ["delta_m", "flops"])


@pytest.mark.parametrize("pruner, objectives", [("front", "delta_m,flops"), ("median", "delta_m")])
def test_a_pruned_study_still_reaches_its_completed_count(tmp_path: Path, pruner: str, objectives: str) -> None:
    path = write_tiny_space(tmp_path / "tiny.yaml")
    data = yaml.safe_load(path.read_text())
    data["search"] = {**data.get("search", {}), "pruner": pruner, "proxy_epochs": 3}
    path.write_text(yaml.safe_dump(data))
    _, study = run_search(str(path), name="p", trials=5, strategy="sampled", objectives=objectives,
                          runs_dir=tmp_path, progress=False)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 5
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE and not t.user_attrs.get("from_baselines"):
            assert len(t.user_attrs["curve"]) == 2  # after epochs 1 and 2 of 3
        if t.state == optuna.trial.TrialState.PRUNED and "curve" in t.user_attrs:
            assert len(t.user_attrs["curve"]) < 3
