"""``--strategy pool``: the study's trials are the candidates of one budgeted search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from mtnas.export import export_trial
from mtnas.study import RECORDER, SearchRun, choose_trial, load_study, run_search, searched_front
from mtnas.study import _optimize as study_module
from mtnas.tree import Architecture
from tests.test_postgres import postgres_url  # noqa: F401  (the fixture)
from tests.test_study import _space

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def _pool_space(tmp_path: Path, budget: float = 6.0) -> Path:
    return _space(tmp_path, proxy_epochs=3, budget=budget)  # rungs at epochs 1, 2 and 3


def _candidates(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if "kind" in t.user_attrs]


def test_the_candidates_are_the_study_trials_and_the_front_is_theirs(tmp_path: Path) -> None:
    run, study = run_search(str(_pool_space(tmp_path)), name="p", strategy="pool", runs_dir=tmp_path, progress=False)
    cands = _candidates(study)
    assert len(cands) >= 3 and len({t.user_attrs["tree_key"] for t in cands}) == len(cands)  # one trial per tree
    assert {t.state for t in cands} <= {COMPLETE, PRUNED}
    assert study.user_attrs["rungs"] == [1, 2, 3]
    for t in cands:
        assert set(t.intermediate_values) <= {1, 2, 3}  # its score at each rung it reached
        if t.state == PRUNED:
            assert t.user_attrs["stopped_by"] in ("pruner", "budget") and t.user_attrs["pruned_reason"]
            if t.user_attrs["stopped_by"] == "pruner":
                assert t.last_step in (1, 2)
        else:  # trained to the end: the study's objectives, its files, its score at the end
            assert 3 in t.intermediate_values and len(t.values) == 2
            assert t.values[0] == pytest.approx(t.user_attrs["delta_m"]) and t.values[1] == t.user_attrs["flops"]
            assert Architecture.load(run.trial_dir(t.number) / "arch.json").tree.key == t.user_attrs["tree_key"]
    chosen = [t for t in cands if t.user_attrs.get("chosen")]
    assert len(chosen) == 1 and chosen[0].state == COMPLETE
    refs = {t.user_attrs["fixed_tree"]: t for t in study.get_trials(deepcopy=False) if "fixed_tree" in t.user_attrs}
    assert set(refs) == {"all-shared", "independent"} and all(t.state == COMPLETE for t in refs.values())
    # the front and the picks read the pool: every searched point is a candidate trained to the end
    front = searched_front(study)
    assert front and all("kind" in t.user_attrs and t.state == COMPLETE for t in front)
    for pick in ("trade-off", "quality", "cheapest", "knee"):
        assert "kind" in choose_trial(study, pick=pick).user_attrs
    report = export_trial(run.root, tmp_path / "out", pick="trade-off")
    assert json.loads((tmp_path / "out" / "arch.json").read_text())["provenance"]["run"] == "p", report


def test_a_resumed_pool_replays_its_decisions_without_new_trials(tmp_path: Path) -> None:
    _, study = run_search(str(_pool_space(tmp_path)), name="p", strategy="pool", runs_dir=tmp_path, progress=False)
    before = [(t.number, t.state, t.user_attrs.get("tree_key"), dict(t.intermediate_values)) for t in study.trials]
    _, again = run_search("", name="p", resume=True, runs_dir=tmp_path, progress=False)
    assert [(t.number, t.state, t.user_attrs.get("tree_key"), dict(t.intermediate_values)) for t in again.trials] \
        == before


def test_a_pool_whose_recording_process_died_asks_its_open_candidates_again(tmp_path: Path, monkeypatch) -> None:
    from mtnas.search import _candidate_trials

    real, told = _candidate_trials.CandidateTrials.complete, []

    def die_at_the_end(self, record, score, found, step):  # the process dies as it would finish a candidate
        told.append(record.number)
        raise KeyboardInterrupt

    monkeypatch.setattr(_candidate_trials.CandidateTrials, "complete", die_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        run_search(str(_pool_space(tmp_path)), name="p", strategy="pool", runs_dir=tmp_path, progress=False)
    study = load_study(SearchRun(tmp_path / "p"))
    assert study.trials[told[0]].state == optuna.trial.TrialState.RUNNING  # left open by the dead process
    monkeypatch.setattr(_candidate_trials.CandidateTrials, "complete", real)
    monkeypatch.setattr("mtnas.study._pool.reap_dead_trials",
                        lambda s, retry: [s._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
                                          for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))])
    _, study = run_search("", name="p", resume=True, runs_dir=tmp_path, progress=False)
    assert study.trials[told[0]].state == optuna.trial.TrialState.FAIL
    key = study.trials[told[0]].user_attrs["tree_key"]
    again = [t for t in _candidates(study) if t.user_attrs["tree_key"] == key and t.number != told[0]]
    assert len(again) == 1 and again[0].state == COMPLETE  # asked again, and finished this time


def test_budget_is_read_with_the_pool_strategy_on_the_command_line(tmp_path: Path) -> None:
    space = _pool_space(tmp_path)
    done = subprocess.run([sys.executable, "-m", "mtnas", "search", str(space), "--strategy", "pool", "--budget", "2",
                           "--runs-dir", str(tmp_path), "--name", "b", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert load_study(SearchRun(tmp_path / "b")).user_attrs["mtnas"]["space"]["search"]["budget"] == 2.0


def test_two_workers_share_a_pool_on_postgres(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    space = _pool_space(tmp_path)
    mtnas = [sys.executable, "-m", "mtnas"]
    create = subprocess.run([*mtnas, "search", str(space), "--name", "pool", "--storage", postgres_url, "--workers",
                             "0", "--strategy", "pool", "--runs-dir", str(tmp_path), "--quiet"],
                            capture_output=True, text=True)
    assert create.returncode == 0, create.stderr
    workers = [subprocess.Popen([*mtnas, "worker", "--storage", postgres_url, "--study", "pool", "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    study = optuna.load_study(study_name="pool", storage=postgres_url)
    cands = _candidates(study)
    assert cands and len({t.user_attrs["tree_key"] for t in cands}) == len(cands)  # recorded once, by one worker
    assert len({t.user_attrs["pid"] for t in cands}) == 1
    evidence = optuna.load_study(study_name="pool:evidence", storage=postgres_url)
    units = [t.system_attrs["unit"] for t in evidence.trials if t.state == COMPLETE]
    assert len(units) == len(set(units))  # no unit trained twice
    assert RECORDER not in units and all(t.state != optuna.trial.TrialState.RUNNING for t in evidence.trials)
    assert len({t.system_attrs["pid"] for t in evidence.trials if t.state == COMPLETE}) >= 2  # the work was shared
    assert "kind" in choose_trial(study).user_attrs


def test_a_pool_trial_made_elsewhere_is_refused_with_its_reason(tmp_path: Path) -> None:
    from mtnas.core import MtnasError
    from mtnas.study import STRATEGIES

    trial = optuna.create_study().ask()
    with pytest.raises(MtnasError, match="strategy 'pool' asks its trials itself"):
        STRATEGIES.get("pool")(trial, None, None, None)
    assert study_module.STUDY_DRIVERS.names() == ["pool"]


def test_trials_given_to_a_pool_are_said_not_to_apply(tmp_path: Path, capsys) -> None:
    run_search(str(_pool_space(tmp_path, budget=2.0)), name="t", strategy="pool", trials=5, runs_dir=tmp_path,
               progress=False)
    assert "--trials does not apply to --strategy pool" in capsys.readouterr().err
