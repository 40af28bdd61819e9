"""Run folders under faults: names that are names, files that are checked, one line and exit 2
for every bad input or broken file, exit 130 for Ctrl-C with nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from mtnas.cli import main
from mtnas.study import run_search
from tests._wait import wait_until
from tests.test_study import _space


def _one_line(capsys: pytest.CaptureFixture, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert all(w in err for w in words), err
    return err


@pytest.mark.parametrize("name", ["..", "../../x", "/abs/run", "a/b", ".hidden", "x" * 300, "run.", ""])
def test_run_names_are_one_folder_name(name: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    space = _space(tmp_path)
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    monkeypatch.chdir(work)
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["search", str(space), "--name", name, "--trials", "1", "--quiet"]) == 2
    _one_line(capsys, "a run name is one folder name")
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_runs_dir_and_run_folder_that_are_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space = _space(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert main(["search", str(space), "--runs-dir", str(tmp_path / "afile"), "--quiet"]) == 2
    _one_line(capsys, "is a file, not a folder")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r").write_text("x")
    assert main(["search", str(space), "--runs-dir", str(tmp_path / "runs"), "--name", "r", "--quiet"]) == 2
    _one_line(capsys, "is a file, not a run folder")
    assert main(["search", str(space), "--runs-dir", str(tmp_path / "afile" / "below"), "--quiet"]) == 2
    _one_line(capsys, "Not a directory")  # the machine's own refusal, as one line


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:  # a supernet search: its trials record their routing
    run_search(str(_space(tmp_path, method="affinity")), name="r", trials=3, runs_dir=tmp_path, progress=False)
    return tmp_path / "r"


def test_damaged_run_files_are_one_line(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    run_json = run_dir / "run.json"
    good = run_json.read_text()
    for bad, words in (("{not json", ["unreadable run file"]), ('{"study": 3}', ["damaged run file"]),
                       ("[]", ["damaged run file"])):
        run_json.write_text(bad)
        assert main(["trials", str(run_dir)]) == 2
        _one_line(capsys, *words)
    run_json.write_text(good)
    db = run_dir / "study.db"
    data = bytearray(db.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = b"\xff" * 4096  # mid-file corruption
    db.write_bytes(bytes(data))
    assert main(["trials", str(run_dir)]) == 2
    _one_line(capsys, "study")


def test_a_damaged_routing_history_leaves_the_rest_of_the_report(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    npz = run_dir / "trials" / "0002" / "routing.npz"
    npz.write_bytes(npz.read_bytes()[:100])  # truncated
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert "damaged routing history" in page and "Pareto front" in page


def test_ctrl_c_exits_130_in_one_line_and_resume_reruns_the_interrupted_tree(tmp_path: Path) -> None:
    space = _space(tmp_path, epochs=8, warmup_epochs=2)
    cmd = [sys.executable, "-m", "mtnas", "search", str(space), "--name", "r", "--runs-dir", str(tmp_path),
           "--trials", "3", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    storage = f"sqlite:///{tmp_path / 'r' / 'study.db'}"

    def searching() -> bool:  # the searched trial (after the two reference trees) is in its 8-epoch search
        try:
            trials = optuna.load_study(study_name="r", storage=storage).get_trials(deepcopy=False)
        except Exception:  # the study is not created yet
            return False
        return any(t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("phase") == "search"
                   for t in trials)

    try:
        wait_until(searching, timeout=120, interval=0.1, what="the searched trial's search")
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip() == "mtnas: interrupted", err
    # the trial the signal landed in is failed, with its reason; none is left RUNNING
    trials = optuna.load_study(study_name="r", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"], trials
    assert trials[2].user_attrs["fail_reason"] == "interrupted (Ctrl-C) during search"
    resumed = subprocess.run(cmd[:4] + ["--resume", "--name", "r", "--runs-dir", str(tmp_path), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="r", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3
    assert {"all-shared", "independent"} <= {t.user_attrs.get("fixed_tree") for t in done}


def test_a_full_disk_is_one_line_and_the_run_resumes(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while the trials write their files: exit 2 with the machine's reason; once there is
    room again, --resume finishes the run."""
    import errno

    from mtnas.core import _io

    space = _space(tmp_path)
    real, writes = _io.os.replace, []

    def full_after_a_few(src: str, dst: str) -> None:
        writes.append(dst)
        if len(writes) > 6:  # the run folder's first files fit, a trial's do not
            raise OSError(errno.ENOSPC, "No space left on device", dst)
        real(src, dst)

    monkeypatch.setattr(_io.os, "replace", full_after_a_few)
    argv = ["search", str(space), "--name", "r", "--runs-dir", str(tmp_path), "--trials", "3", "--quiet",
            "--strategy", "sampled"]
    assert main(argv) == 2
    _one_line(capsys, "No space left on device")
    monkeypatch.setattr(_io.os, "replace", real)
    assert main(["search", "--resume", "--name", "r", "--runs-dir", str(tmp_path), "--quiet"]) == 0
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / 'r' / 'study.db'}")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 3
