"""``mtnas search``: run folder, enqueued baselines, reuse of evaluated trees, failures, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
import yaml

from mtnas.cli import main
from mtnas.study import _optimize as study_module
from mtnas.study import fail_reason
from mtnas.train import NonFiniteLossError
from mtnas.train import _evidence as evidence_module
from mtnas.tree import Architecture
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
        # every file of the trial is an Optuna artifact too, where optuna-dashboard and other machines find it
        store = optuna.artifacts.FileSystemArtifactStore(str(root / "artifacts"))
        for name, artifact_id in t.user_attrs["artifacts"].items():
            with store.open_reader(artifact_id) as stored:
                assert stored.read() == (run.trial_dir(t.number) / name).read_bytes()
        assert {"arch.json", "metrics.json", "tree.png"} <= set(t.user_attrs["artifacts"])
    # the default (trained) search records every tree it trained; it trains no routing
    candidates = json.loads((run.trial_dir(2) / "candidates.json").read_text())
    assert candidates["chosen"] == trials[2].user_attrs["tree"] and not (run.trial_dir(2) / "routing.npz").exists()
    assert "candidates.json" in trials[2].user_attrs["artifacts"]
    front = json.loads((root / "pareto.json").read_text())
    assert 0 in [f["trial"] for f in front]  # all-shared has the fewest FLOPs: always on the front
    info = json.loads((root / "run.json").read_text())
    assert info["strategy"] == "differentiable" and info["objectives"] == ["delta_m", "flops"]
    assert (info["threads"], info["threads_from"]) == (1, "MTNAS_THREADS")  # conftest's; recorded with the run


def test_timeout_stops_starting_trials_and_a_space_object_is_accepted(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    from mtnas.space import load_space

    space = load_space(_space(tmp_path))
    # A timeout already spent: no trial starts; the enqueued baselines wait for a --resume.
    run, study = study_module.run_search(space, trials=10, timeout=1e-6, runs_dir=tmp_path, progress=False)
    assert capsys.readouterr().err.strip() == (f"note: --timeout 1e-06s stopped the search after 0 of 10 trials; "
                                               f"'mtnas search --resume --name {space.name}' runs the rest")
    assert run.root == tmp_path / space.name
    assert _completed(study) == []
    assert [(t.state, t.user_attrs["fixed_tree"]) for t in study.trials] == [
        (optuna.trial.TrialState.WAITING, "all-shared"), (optuna.trial.TrialState.WAITING, "independent")]
    _, resumed = study_module.run_search("", name=space.name, resume=True, trials=2, runs_dir=tmp_path, progress=False)
    assert [t.user_attrs["fixed_tree"] for t in _completed(resumed)] == ["all-shared", "independent"]


def test_an_evaluated_tree_is_reused_not_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained = []
    real = evidence_module.train_trees
    monkeypatch.setattr(evidence_module, "train_trees", lambda space, bundle, trees, **k: trained.extend(trees)
                        or real(space, bundle, trees, **k))
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
    # three distinct trees: the independent one read off the baselines, the other two trained once
    assert len({t.user_attrs["tree_key"] for t in trials}) == 3 and len(trained) == 2
    (independent,) = [t for t in trials if t.user_attrs.get("fixed_tree") == "independent"]
    assert independent.user_attrs["from_baselines"] and independent.user_attrs["delta_m"] == 0.0
    reused = [t for t in trials if "reused_from" in t.user_attrs]
    assert len(reused) == 2
    for t in reused:
        source = study.trials[t.user_attrs["reused_from"]]
        assert source.user_attrs["tree_key"] == t.user_attrs["tree_key"] and source.values == t.values


def _trial_training_raises(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """A trial's proxy training of the all-shared tree raises ``error`` (the baselines, which train
    that tree first as a unit of evidence, are computed as usual)."""
    from mtnas.study import _objective

    class Failing(evidence_module.Evidence):
        def obtain(self, units):
            if any(u.tree.num_nodes == u.tree.num_layers for u in units):  # the all-shared tree
                raise error
            return super().obtain(units)

    monkeypatch.setattr(_objective, "Evidence", Failing)


def test_a_non_finite_loss_fails_that_trial_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _trial_training_raises(monkeypatch, NonFiniteLossError("loss of task 'digit' is nan at epoch 0, step 3"))
    _, study = study_module.run_search(
        str(_space(tmp_path)), name="r", trials=2, strategy="sampled", runs_dir=tmp_path, progress=False
    )
    failed = study.trials[0]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert "nan" in failed.user_attrs["fail_reason"]
    assert len(_completed(study)) == 2  # the study went on


def test_resume_continues_to_the_requested_count(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space = str(_space(tmp_path))
    study_module.run_search(space, name="r", trials=2, strategy="sampled", runs_dir=tmp_path, progress=False)
    assert capsys.readouterr().err.strip() == ("note: 2 trials hold only the enqueued reference trees (all-shared, "
                                               "independent): no tree is searched; give --trials 3 or more")
    _, study = study_module.run_search("", name="r", trials=3, resume=True, runs_dir=tmp_path, progress=False)
    assert [t.number for t in _completed(study)] == [0, 1, 2]
    assert "note:" not in capsys.readouterr().err


def test_an_interrupted_trial_keeps_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    _trial_training_raises(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        study_module.run_search(str(_space(tmp_path)), name="r", trials=3, runs_dir=tmp_path, progress=False)
    failed = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / 'r' / 'study.db'}").trials[0]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == "interrupted (Ctrl-C) during proxy training"
    capsys.readouterr()
    assert main(["trials", str(tmp_path / "r")]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert row.split()[:2] == ["0", "FAIL"] and row.endswith("reference: all-shared; interrupted (Ctrl-C) during "
                                                             "proxy training")


def test_search_takes_a_budget_and_overrides_and_says_what_workers_0_leaves_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    space = str(_space(tmp_path))
    args = ["search", space, "--runs-dir", str(tmp_path), "--quiet", "--epochs", "2", "--set", "training.lr=0.01",
            "--set", "search.ranges.tau0=[1.5, 3.0]"]
    assert main([*args, "--name", "w0", "--workers", "0", "--trials", "4"]) == 0
    out = capsys.readouterr().out
    assert (f"start workers with 'mtnas worker --storage sqlite:///{(tmp_path / 'w0' / 'study.db').resolve()} "
            "--study w0' on any machine") in out and "until it holds 4" in out
    resolved = yaml.safe_load((tmp_path / "w0" / "space.yaml").read_text())
    assert resolved["training"]["epochs"] == 2 and resolved["training"]["lr"] == 0.01
    assert (resolved["search"]["epochs"], resolved["search"]["warmup_epochs"], resolved["search"]["proxy_epochs"]) == (
        4, 2, 2)
    assert resolved["search"]["ranges"]["tau0"] == [1.5, 3.0]
    assert main([*args[:4], "--name", "bad", "--set", "search.rangs.tau0=[1, 2]"]) == 2
    assert ("search: unknown key 'rangs' (did you mean 'ranges'?)" in capsys.readouterr().err)
    assert main(["search", "--resume", "--name", "w0", "--runs-dir", str(tmp_path), "--epochs", "1"]) == 2
    assert "--resume continues a run with the space it started with" in capsys.readouterr().err


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
    # the same trial again: what it had sampled before the kill is kept (the kill may land mid-sampling)
    assert study.trials[killed].params.items() <= retry[0].params.items()
    assert "is gone" in fail_reason(study, study.trials[killed])


def test_two_local_workers_share_one_journal(tmp_path: Path) -> None:
    run, study = study_module.run_search(
        str(_space(tmp_path)), name="r", trials=6, strategy="sampled", workers=2, runs_dir=tmp_path, progress=False
    )
    assert (tmp_path / "r" / "journal.log").is_file() and not (tmp_path / "r" / "study.db").exists()
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers)))  # no lost or duplicated trial numbers
    # a trial runs only while the completed ones and those running before it stay below 6
    assert len(_completed(study)) == 6


TRIALS = 12  # of the killed-worker test below


def test_a_killed_local_worker_trial_is_failed_and_the_count_still_reached(tmp_path: Path) -> None:
    """SIGKILL the helper of ``--workers 2`` mid-trial: its trial ends FAIL with the reason, and the
    study still ends with exactly the requested completed trials, numbered without gaps."""
    import os
    import signal
    import subprocess
    import sys

    from mtnas.study import open_storage

    # enough work that the main process cannot finish the count before the helper has started (its
    # start-up, torch's import, takes seconds; 8 trials of 3 epochs were done first on an idle machine)
    space = _space(tmp_path, proxy_epochs=6)
    env = {**os.environ, "MTNAS_HEARTBEAT": "1,2"}
    cmd = [sys.executable, "-m", "mtnas", "search", str(space), "--name", "r", "--runs-dir", str(tmp_path),
           "--trials", str(TRIALS), "--strategy", "sampled", "--workers", "2", "--quiet"]
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
    # Failed and retried (enqueued once; the retry may still wait) when its death was seen while the
    # study needed trials: by the heartbeat check, or at the main process's next trial. Failed and not
    # retried when the main process completed the count first (its settling: no more trials are
    # needed).
    retried = [t for t in study.trials if killed in (t.system_attrs.get("failed_trial"), t.user_attrs.get("retry_of"))]
    assert len(retried) == 1 or (not retried and "is gone" in study.user_attrs.get(f"fail_reason:{killed}", ""))
    assert len(_completed(study)) == TRIALS
    assert [t.number for t in study.trials] == list(range(len(study.trials)))


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: its pid names no process now
    return proc.pid


def test_a_trial_whose_process_is_gone_is_failed_and_retried_at_once(tmp_path: Path) -> None:
    """No grace period to wait for: a RUNNING trial of this machine whose process is gone is failed,
    its reason kept in the study, and the same parameters (and fixed tree) enqueued once."""
    import socket

    from mtnas.study import open_storage, reap_dead_trials

    study = optuna.create_study(storage=open_storage(f"journal:///{tmp_path / 'journal.log'}"), study_name="s")
    dead = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    for key, value in {"host": socket.gethostname(), "pid": _dead_pid(), "fixed_tree": "independent"}.items():
        dead.set_user_attr(key, value)
    alive = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    alive.set_user_attr("host", socket.gethostname())
    alive.set_user_attr("pid", os.getpid())
    elsewhere = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    elsewhere.set_user_attr("host", "another-machine")
    elsewhere.set_user_attr("pid", _dead_pid())  # not this machine's process: left to the heartbeat
    assert reap_dead_trials(study) == [dead.number]
    assert reap_dead_trials(study) == []  # once
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "RUNNING", "RUNNING", "WAITING"]
    assert trials[3].user_attrs == {"fixed_tree": "independent", "retry_of": dead.number}
    assert trials[3].system_attrs["fixed_params"] == trials[0].params
    assert "is gone" in fail_reason(study, trials[0])


def test_a_reaper_that_loses_the_race_to_another_leaves_the_trial_and_its_retry_to_it(tmp_path: Path) -> None:
    """Two workers reap the same dead trial: the one whose write comes second (Optuna's
    UpdateFinishedTrialError, the trial finished between its read and its write) neither fails
    nor enqueues a second retry."""
    import socket

    from mtnas.study import open_storage, reap_dead_trials

    study = optuna.create_study(storage=open_storage(f"journal:///{tmp_path / 'journal.log'}"), study_name="s")
    dead = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    dead.set_user_attr("host", socket.gethostname())
    dead.set_user_attr("pid", _dead_pid())
    storage, write = study._storage, study._storage.set_trial_state_values

    def the_other_worker_first(trial_id, state, values=None):
        write(trial_id, optuna.trial.TrialState.FAIL)  # the other reaper's write lands in between
        return write(trial_id, state, values)

    storage.set_trial_state_values = the_other_worker_first
    assert reap_dead_trials(study) == []
    storage.set_trial_state_values = write
    assert [t.state.name for t in study.get_trials()] == ["FAIL"]  # no retry from this one


def test_exactly_n_trials_complete_when_workers_race(tmp_path: Path) -> None:
    """A trial runs only while the completed trials and the running ones before it stay below N."""
    from mtnas.study import open_storage, wait_for_turn

    study = optuna.create_study(storage=open_storage(f"journal:///{tmp_path / 'journal.log'}"), study_name="s")
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=1.0))
    first, second = study.ask(), study.ask()
    for t in (first, second):
        t.set_user_attr("pid", os.getpid())
    assert wait_for_turn(first, 3, poll=0.01)  # 2 complete + 0 ahead < 3
    study.tell(first, 1.0)
    assert not wait_for_turn(second, 3, poll=0.01)  # 3 complete: not needed


def test_an_unreachable_storage_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = "postgresql://nobody@127.0.0.1:9/none"
    assert main(["search", str(_space(tmp_path)), "--storage", url, "--runs-dir", str(tmp_path), "--quiet"]) == 2
    assert "cannot open the study storage" in capsys.readouterr().err


def test_a_sqlite_study_waits_out_a_lock_held_longer_than_sqlites_default(tmp_path: Path) -> None:
    # local workers, their heartbeat threads and a reader share one file: a write that finds it
    # locked waits (sqlite3's own default gives up after 5 s with "database is locked")
    import sqlite3
    import threading
    import time

    from mtnas.study import open_storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    holder = sqlite3.connect(tmp_path / "study.db", check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    released = threading.Timer(6.0, holder.commit)
    released.start()
    start = time.monotonic()
    try:
        study.set_user_attr("k", 1)  # waits for the lock instead of failing
    finally:
        released.join()
        holder.close()
    assert time.monotonic() - start >= 5.0 and study.user_attrs["k"] == 1
