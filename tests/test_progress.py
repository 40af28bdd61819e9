"""The study's bar: the running trial's phase, and an ETA from the searched trials done so far."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import optuna
import pytest
import yaml

from mtnas.study import format_seconds, run_search, study_eta
from tests.conftest import write_tiny_space

T0 = dt.datetime(2030, 1, 1, 12, 0, 0)


def _trial(number: int, state: optuna.trial.TrialState, start: float, end: float | None = None,
           fixed: str | None = None) -> optuna.trial.FrozenTrial:
    return optuna.trial.FrozenTrial(
        number=number, state=state, value=None, values=[0.0, 1.0] if state.is_finished() else None,
        datetime_start=T0 + dt.timedelta(seconds=start),
        datetime_complete=None if end is None else T0 + dt.timedelta(seconds=end), params={}, distributions={},
        user_attrs={"fixed_tree": fixed} if fixed else {}, system_attrs={}, intermediate_values={}, trial_id=number)


DONE, RUNNING = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING


def test_the_eta_comes_from_the_searched_trials_not_the_quick_references() -> None:
    refs = [_trial(0, DONE, 0, 1, "all-shared"), _trial(1, DONE, 1, 1.5, "independent")]
    assert study_eta(refs, target=8, now=T0 + dt.timedelta(seconds=2)) is None  # nothing searched yet
    searched = [_trial(2, DONE, 2, 102), _trial(3, DONE, 102, 302)]  # 100 s and 200 s: 150 s each
    running = _trial(4, RUNNING, 302)
    now = T0 + dt.timedelta(seconds=352)  # the running trial is 50 s in
    # 4 of 8 done; the running one has ~100 s left, then 3 more of 150 s
    assert study_eta([*refs, *searched, running], target=8, now=now) == pytest.approx(100 + 3 * 150)
    assert study_eta([*refs, *searched], target=4, now=now) == 0.0
    # two running at once share the rest
    other = _trial(5, RUNNING, 342)
    assert study_eta([*refs, *searched, running, other], target=8, now=now) == pytest.approx((100 + 140 + 2 * 150) / 2)
    assert [format_seconds(s) for s in (5, 125, 7300)] == ["5s", "2m05s", "2h01m"]


def test_the_bar_shows_each_phase_and_an_eta(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_tiny_space(tmp_path / "tiny.yaml")
    data = yaml.safe_load(path.read_text())
    data["search"].update({"epochs": 3, "warmup_epochs": 1, "proxy_epochs": 1, "method": "affinity"})
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # a supernet search: its epochs show on a bar
    run_search(str(path), name="r", trials=4, runs_dir=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "trial 0: proxy training" in err  # the all-shared reference trains; independent is the baselines
    assert "trial 2: search" in err and "trial 2: proxy training" in err
    assert "search: " in err  # the search's own bar: its epochs
    assert "ETA after the first searched trial" in err
    assert re.search(r"ETA \d+(s|m\d\ds)", err.split("last: trial 2")[1])  # after trial 2, an estimate
    assert "trials: 4/4" in err
