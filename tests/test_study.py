"""``mtnas search``: run folder, enqueued baselines, reuse of evaluated trees, failures, resume."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import optuna
import pytest
import yaml

from mtnas.cli import main
from mtnas.study import _objective as objective_module
from mtnas.study import _optimize as study_module
from mtnas.study import fail_reason
from mtnas.train import NonFiniteLossError
from mtnas.tree import Architecture, BranchingTree
from tests._wait import wait_until
from tests.conftest import write_tiny_space


def _space(tmp_path: Path, **search) -> Path:
    path = write_tiny_space(tmp_path / "tiny.yaml")
    data = yaml.safe_load(path.read_text())
    data["search"].update({"epochs": 3, "warmup_epochs": 1, "proxy_epochs": 1, **search})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def test_search_writes_the_run_folder_and_keeps_both_baselines(tmp_path: Path) -> None:
    run, study = study_module.run_search(str(_space(tmp_path)), name="r", trials=3, runs_dir=tmp_path, progress=False)
    root = tmp_path / "r"
    for name in ("space.yaml", "run.json", "study.db", "baselines.json", "pareto.json"):
        assert (root / name).is_file(), name
    trials = _completed(study)
    assert [t.number for t in trials] == [0, 1, 2]
    assert trials[0].user_attrs["tree"] == "0-3: all" and trials[1].user_attrs["tree"] == "0-3: each"
    for t in trials:
        arch = Architecture.load(run.trial_dir(t.number) / "arch.json")
        assert arch.tree.key == t.user_attrs["tree_key"]
        assert arch.provenance["trial"] == t.number
        metrics = json.loads((run.trial_dir(t.number) / "metrics.json").read_text())
        assert metrics["delta_m"] == pytest.approx(t.values[0])
        picture = run.trial_dir(t.number) / "tree.png"
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # the same picture is the trial's Optuna artifact, where optuna-dashboard finds it
        (meta,) = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        assert meta.artifact_id == t.user_attrs["tree_png_artifact"] and meta.mimetype == "image/png"
        with run.artifact_store().open_reader(meta.artifact_id) as stored:
            assert stored.read() == picture.read_bytes()
    assert (run.trial_dir(2) / "routing.npz").is_file()  # a differentiable trial records its routing
    front = json.loads((root / "pareto.json").read_text())
    assert 0 in [f["trial"] for f in front]  # all-shared has the fewest FLOPs: always on the front
    info = json.loads((root / "run.json").read_text())
    assert info["strategy"] == "differentiable" and info["objectives"] == ["delta_m", "flops"]


def test_timeout_stops_starting_trials_and_a_space_object_is_accepted(tmp_path: Path) -> None:
    from mtnas.space import load_space

    space = load_space(_space(tmp_path))
    # A timeout already spent: no trial starts; the enqueued baselines wait for a --resume.
    run, study = study_module.run_search(space, trials=10, timeout=1e-6, runs_dir=tmp_path, progress=False)
    assert run.root == tmp_path / space.name
    assert _completed(study) == []
    assert [(t.state, t.user_attrs["fixed_tree"]) for t in study.trials] == [
        (optuna.trial.TrialState.WAITING, "all-shared"), (optuna.trial.TrialState.WAITING, "independent")]
    _, resumed = study_module.run_search("", name=space.name, resume=True, trials=2, runs_dir=tmp_path, progress=False)
    assert [t.user_attrs["fixed_tree"] for t in _completed(resumed)] == ["all-shared", "independent"]


def test_an_evaluated_tree_is_reused_not_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained = []
    real = objective_module.train_tree
    monkeypatch.setattr(objective_module, "train_tree", lambda tree, *a, **k: trained.append(tree) or real(tree, *a, **k))
    space = _space(tmp_path)
    data = yaml.safe_load(space.read_text())
    data["tasks"] = ["digit", "orientation"]
    data["routing"]["branching_layers"] = [3]  # sampling can give two trees: shared, or split at layer 3
    space.write_text(yaml.safe_dump(data))
    _, study = study_module.run_search(
        str(space), name="r", trials=5, strategy="sampled", sampler="random", runs_dir=tmp_path, progress=False
    )
    trials = _completed(study)
    assert len(trials) == 5
    # three distinct trees (the enqueued independent one too), each trained once
    assert len(trained) == len({t.user_attrs["tree_key"] for t in trials}) == 3
    reused = [t for t in trials if "reused_from" in t.user_attrs]
    assert len(reused) == 2
    for t in reused:
        source = study.trials[t.user_attrs["reused_from"]]
        assert source.user_attrs["tree_key"] == t.user_attrs["tree_key"] and source.values == t.values


def test_a_non_finite_loss_fails_that_trial_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = objective_module.train_tree

    def exploding(tree: BranchingTree, *args, **kwargs):
        if tree.num_nodes == tree.num_tasks * tree.num_layers:  # the independent tree
            raise NonFiniteLossError("loss of task 'digit' is nan at epoch 0, step 3")
        return real(tree, *args, **kwargs)

    monkeypatch.setattr(objective_module, "train_tree", exploding)
    _, study = study_module.run_search(
        str(_space(tmp_path)), name="r", trials=2, strategy="sampled", runs_dir=tmp_path, progress=False
    )
    failed = study.trials[1]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert "nan" in failed.user_attrs["fail_reason"]
    assert len(_completed(study)) == 2  # the study went on


def test_resume_continues_to_the_requested_count(tmp_path: Path) -> None:
    space = str(_space(tmp_path))
    study_module.run_search(space, name="r", trials=2, strategy="sampled", runs_dir=tmp_path, progress=False)
    _, study = study_module.run_search("", name="r", trials=3, resume=True, runs_dir=tmp_path, progress=False)
    assert [t.number for t in _completed(study)] == [0, 1, 2]


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["search", "--resume", "--name", "nothing", "--runs-dir", str(tmp_path)]) == 2
    assert "not an mtnas run folder" in capsys.readouterr().err
    assert main(["search", str(_space(tmp_path)), "--objectives", "delta_m,flop", "--runs-dir", str(tmp_path)]) == 2
    assert "unknown objective 'flop' (did you mean 'flops'?)" in capsys.readouterr().err
    assert main(["search", str(_space(tmp_path)), "--strategy", "grid", "--runs-dir", str(tmp_path)]) == 2
    assert "unknown strategy 'grid'" in capsys.readouterr().err


def test_trials_and_show_read_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study_module.run_search(str(_space(tmp_path)), name="r", trials=2, strategy="sampled", runs_dir=tmp_path, progress=False)
    capsys.readouterr()
    assert main(["trials", str(tmp_path / "r"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"] and rows[0]["tree"] == "0-3: all"
    assert main(["show", str(tmp_path / "r")]) == 0
    assert "layers 0-3: digit, parity, ge5, orientation, frequency, diagonal" in capsys.readouterr().out


def test_a_killed_search_resumes_with_nothing_lost(tmp_path: Path) -> None:
    """SIGKILL ``mtnas search`` mid-trial, then ``--resume`` at once (well within the heartbeat
    grace): the dead trial is failed and retried straight away, and no completed trial is lost."""
    import os
    import signal
    import subprocess
    import sys

    space = _space(tmp_path, epochs=8, warmup_epochs=2)
    cmd = [sys.executable, "-m", "mtnas", "search", str(space), "--name", "r", "--runs-dir", str(tmp_path), "--trials", "4", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = f"sqlite:///{tmp_path / 'r' / 'study.db'}"

    def running_after_two_completed() -> tuple[list[int], int] | None:
        try:
            trials = optuna.load_study(study_name="r", storage=storage).get_trials(deepcopy=False)
        except Exception:  # the study is not created yet
            return None
        done = [t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        running = [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING and "pid" in t.user_attrs]
        return (done, running[0]) if len(done) >= 2 and running else None

    try:
        before, killed = wait_until(running_after_two_completed, timeout=120, interval=0.2,
                                    what="a running trial after two completed ones")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    resumed = subprocess.run(cmd[:4] + ["--resume", "--name", "r", "--runs-dir", str(tmp_path), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="r", storage=storage)
    completed = [t.number for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert set(before) <= set(completed) and len(completed) == 4
    assert study.trials[killed].state == optuna.trial.TrialState.FAIL
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE
    assert retry[0].params == study.trials[killed].params  # the same trial again
    assert "is gone" in fail_reason(study, study.trials[killed])


def test_two_local_workers_share_one_journal(tmp_path: Path) -> None:
    run, study = study_module.run_search(
        str(_space(tmp_path)), name="r", trials=6, strategy="sampled", workers=2, runs_dir=tmp_path, progress=False
    )
    assert (tmp_path / "r" / "journal.log").is_file() and not (tmp_path / "r" / "study.db").exists()
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers)))  # no lost or duplicated trial numbers
    # Each process stops once 6 are complete; one still running then may add one more.
    assert 6 <= len(_completed(study)) <= 7


def test_a_killed_local_worker_trial_is_failed_and_the_count_still_reached(tmp_path: Path) -> None:
    """SIGKILL the helper of ``--workers 2`` mid-trial: its trial ends FAIL with the reason, and the
    study still ends with exactly the requested completed trials, numbered without gaps."""
    import os
    import signal
    import subprocess
    import sys

    from mtnas.study import open_storage

    space = _space(tmp_path, proxy_epochs=3)
    env = {**os.environ, "MTNAS_HEARTBEAT": "1,2"}
    cmd = [sys.executable, "-m", "mtnas", "search", str(space), "--name", "r", "--runs-dir", str(tmp_path),
           "--trials", "8", "--strategy", "sampled", "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = f"journal:///{tmp_path / 'r' / 'journal.log'}"

    def kill_a_helper_trial() -> int | None:
        assert proc.poll() is None, "the search ended before a helper trial was seen"
        if not (tmp_path / "r" / "journal.log").exists():
            return None
        try:
            trials = optuna.load_study(study_name="r", storage=open_storage(journal)).get_trials(deepcopy=False)
        except KeyError:  # the study is not created yet
            return None
        for t in trials:  # a trial the helper worker (not the main process) is running
            if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("pid") not in (None, proc.pid):
                os.kill(t.user_attrs["pid"], signal.SIGKILL)
                return t.number + 1  # truthy for trial 0 too
        return None

    killed = wait_until(kill_a_helper_trial, timeout=120, interval=0.1, what="a running trial of the helper") - 1
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "worker process(es) ended with an error" in err
    study = optuna.load_study(study_name="r", storage=open_storage(journal))
    assert study.trials[killed].state == optuna.trial.TrialState.FAIL
    # Failed either by the main process's heartbeat check (then retried), or, when the study was
    # done before the heartbeat went stale, as soon as the helper's death was seen.
    retried = [t for t in study.trials if killed in (t.system_attrs.get("failed_trial"), t.user_attrs.get("retry_of"))]
    assert len(retried) == 1  # enqueued once (it may still wait: the study was complete before it ran)
    assert len(_completed(study)) == 8
    assert [t.number for t in study.trials] == list(range(len(study.trials)))


def test_journal_heartbeats_fail_a_silent_trial_and_enqueue_its_retry(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna's JournalStorage has no heartbeats; mtnas's adds them: a trial silent past the grace
    period is failed by any process and retried (RetryHeartbeatStaleTrialCallback)."""
    from mtnas.study import _storage as storage_module

    monkeypatch.setenv("MTNAS_HEARTBEAT", "1,5")
    store = storage_module.open_storage(f"journal:///{tmp_path / 'journal.log'}")
    assert isinstance(store, storage_module.HeartbeatJournalStorage)
    study = optuna.create_study(storage=store, study_name="s")
    trial = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    now = time.time()
    monkeypatch.setattr(storage_module.time, "time", lambda: now)
    store.record_heartbeat(trial._trial_id)
    assert store._get_stale_trial_ids(study._study_id) == []  # beating
    monkeypatch.setattr(storage_module.time, "time", lambda: now + 4)
    assert store._get_stale_trial_ids(study._study_id) == []  # within the grace period
    monkeypatch.setattr(storage_module.time, "time", lambda: now + 6)
    assert store._get_stale_trial_ids(study._study_id) == [trial._trial_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.get_trials()]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    retry = study.get_trials()[1]
    assert retry.system_attrs["failed_trial"] == trial.number and retry.params == study.get_trials()[0].params


def test_an_unreachable_storage_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = "postgresql://nobody@127.0.0.1:9/none"
    assert main(["search", str(_space(tmp_path)), "--storage", url, "--runs-dir", str(tmp_path), "--quiet"]) == 2
    assert "cannot open the study storage" in capsys.readouterr().err
