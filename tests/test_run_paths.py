"""Where a run writes and who may write it, third pass.

The classes, each closed where the value enters:

- writes outside the folder the user named: an artifact store edited into a copied run's run.json,
  a journal URL read from the root, an empty ``MTNAS_CACHE_DIR`` (``tests/test_cache_entries.py``);
- two searches on one name: the name is claimed atomically before anything is read or written;
- runs no command can read: a relative storage URL (read as SQLAlchemy reads it and recorded
  absolute), a failed setup that left a run.json behind, a relative artifact folder recorded as
  written (what broke ``python -m benchmarks.chaos``);
- ``--timeout`` with local workers: it binds every process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from mtnas.cli import main
from mtnas.study import SearchRun, absolute_url, file_path, run_search, run_worker, worker_command
from mtnas.study import _optimize as optimize_module
from tests.test_hostile_inputs import _cli_error
from tests.test_hostile_runs import _edit_json
from tests.test_study import _completed, _space


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _sampled(tmp_path: Path, *extra: str, name: str = "r") -> list[str]:
    return ["search", str(_space(tmp_path)), "--name", name, "--runs-dir", str(tmp_path / "runs"), "--strategy",
            "sampled", "--quiet", *extra]


# --- writes outside the folder the user named -----------------------------------------------------------

#: an artifact store edited into a copied run's run.json -> what it names
EDITED_STORES: dict[str, Callable[[Path], str]] = {
    "another folder": lambda outside: str(outside),
    "a file URL of another folder": lambda outside: f"file://{outside}",
    "a relative folder": lambda outside: "etc",
    "a bucket": lambda outside: "s3://someone-elses-bucket",
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    run_search(str(_space(root)), name="r", trials=3, strategy="sampled", runs_dir=root, progress=False)
    return root / "r"


@pytest.mark.parametrize("case", list(EDITED_STORES))
def test_an_artifact_store_edited_into_run_json_is_refused_on_resume(case: str, finished: Path, tmp_path: Path,
                                                                     capfd: pytest.CaptureFixture) -> None:
    copy = tmp_path / "runs" / "c"
    shutil.copytree(finished, copy)
    outside = tmp_path / "etc"  # what /etc stood for
    outside.mkdir()
    store = EDITED_STORES[case](outside)
    _edit_json(copy / "run.json", lambda d: d.update(artifacts=store))
    before = _files(copy)
    err = _cli_error(["search", "--resume", "--name", "c", "--runs-dir", str(copy.parent), "--trials", "4", "--quiet"],
                     capfd)
    assert "run.json: artifacts" in err and "is neither this folder's artifacts/ nor the store the study records" in err
    assert _files(outside) == [] and _files(copy) == before  # nothing written there, nor here


def test_a_copied_run_resumes_into_its_own_artifact_store(finished: Path, tmp_path: Path) -> None:
    copy = tmp_path / "runs" / "c"
    shutil.copytree(finished, copy)
    original = _files(finished / "artifacts")
    run, study = run_search("", name="c", resume=True, trials=4, runs_dir=copy.parent, progress=False)
    assert _files(finished / "artifacts") == original  # the original's store is untouched
    new = study.trials[3].user_attrs["artifacts"]
    assert {(copy / "artifacts" / i).is_file() for i in new.values()} == {True}
    assert study.user_attrs["mtnas"]["artifacts"] == str(copy.resolve() / "artifacts")


#: a storage URL as written -> as recorded (absolute), and the file it names
STORAGE_URLS: dict[str, tuple[str, str | None]] = {
    "sqlite:///rel.db": ("sqlite:///{here}/rel.db", "{here}/rel.db"),
    "sqlite:////abs/x.db": ("sqlite:////abs/x.db", "/abs/x.db"),
    "journal:///rel.log": ("journal:///{here}/rel.log", "{here}/rel.log"),
    "journal:///sub/../j.log?x=1": ("journal:///{here}/j.log?x=1", "{here}/j.log"),
    "journal:////abs/j.log": ("journal:////abs/j.log", "/abs/j.log"),
    "postgresql://u@h/db": ("postgresql://u@h/db", None),
}


@pytest.mark.parametrize("written", list(STORAGE_URLS))
def test_storage_urls_are_read_as_sqlalchemy_reads_them_and_recorded_absolute(
        written: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recorded, path = (None if v is None else v.format(here=tmp_path) for v in STORAGE_URLS[written])
    assert absolute_url(written) == recorded and file_path(recorded) == path


def test_a_relative_journal_is_written_here_not_at_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"rel-{uuid.uuid4().hex[:8]}.log"
    monkeypatch.chdir(tmp_path)
    run, _ = run_search(str(_space(tmp_path)), name="j", trials=2, strategy="sampled", storage=f"journal:///{name}",
                        workers=0, progress=False)
    assert (tmp_path / name).is_file() and not Path("/", name).exists()
    assert json.loads((run.root / "run.json").read_text())["storage"] == f"journal:///{tmp_path / name}"


# --- runs no command can read -----------------------------------------------------------------------------


def test_a_relative_sqlite_url_is_created_and_read_in_one_place(tmp_path: Path, capfd: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(_sampled(tmp_path, "--storage", "sqlite:///rel.db", "--trials", "2")) == 0, capfd.readouterr().err
    recorded = json.loads((tmp_path / "runs" / "r" / "run.json").read_text())["storage"]
    assert recorded == f"sqlite:///{tmp_path / 'rel.db'}" and (tmp_path / "rel.db").is_file()
    for where, url in ((tmp_path, "sqlite:///rel.db"), (tmp_path / "runs", recorded)):  # as written, and recorded
        monkeypatch.chdir(where)
        capfd.readouterr()
        assert main(["trials", f"{url}#r", "--json"]) == 0, capfd.readouterr().err
        assert [t["state"] for t in json.loads(capfd.readouterr().out)] == ["COMPLETE", "COMPLETE"]


#: a search that fails while it sets up -> the extra arguments, a fragment of its one error line
FAILED_SETUPS: dict[str, tuple[list[str], str]] = {
    "a storage that does not open": (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open the study"),
    "a storage file in no folder": (["--storage", "sqlite:///no/such/folder/x.db"], "no folder"),
    "an unknown objective": (["--objectives", "delta_m,speed"], "unknown objective"),
    "an artifact store of another scheme": (["--artifacts", "gs://bucket"], "unknown scheme 'gs'"),
}


@pytest.mark.parametrize("case", list(FAILED_SETUPS))
def test_a_search_that_fails_to_set_up_leaves_the_name_free(case: str, tmp_path: Path, capfd: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    extra, expected = FAILED_SETUPS[case]
    monkeypatch.chdir(tmp_path)
    err = _cli_error(_sampled(tmp_path, *extra), capfd)
    assert expected in err, err
    assert not (tmp_path / "runs" / "r").exists()  # no run.json blocks the name


def test_a_failed_setup_in_a_prepared_folder_leaves_the_folder_as_it_was(tmp_path: Path,
                                                                         capfd: pytest.CaptureFixture) -> None:
    prepared = tmp_path / "runs" / "r"
    prepared.mkdir(parents=True)
    (prepared / "notes.txt").write_text("mine")
    _cli_error(_sampled(tmp_path, "--objectives", "delta_m,speed"), capfd)
    assert _files(prepared) == ["notes.txt"]
    assert main(_sampled(tmp_path, "--trials", "2")) == 0, capfd.readouterr().err  # the name is free


def test_a_relative_artifact_folder_is_recorded_absolute_and_a_worker_elsewhere_finds_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What broke ``python -m benchmarks.chaos``: its workers start in another folder."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(here)
    journal = f"journal:///{tmp_path / 'j.log'}"
    run, _ = run_search(str(_space(tmp_path)), name="w", trials=3, strategy="sampled", storage=journal,
                        artifacts="./af", workers=0, progress=False)
    info = json.loads((run.root / "run.json").read_text())
    assert info["artifacts"] == str(here / "af")
    monkeypatch.chdir(elsewhere)
    study = run_worker(journal, "w", device="cpu")
    assert study.user_attrs["mtnas"]["artifacts"] == str(here / "af")
    for trial in _completed(study):
        assert {(here / "af" / i).is_file() for i in trial.user_attrs["artifacts"].values()} == {True}
    assert _files(elsewhere) == []


# --- two searches on one name ------------------------------------------------------------------------------


def test_a_second_search_on_a_name_being_set_up_is_refused_and_the_first_is_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mtnas.core import MtnasError

    started, go = threading.Event(), threading.Event()
    real = optimize_module.load_resolved

    def slow_load(arg):  # the first search, held while it sets up (its space loading)
        if threading.current_thread().name == "first":
            started.set()
            assert go.wait(60)
        return real(arg)

    monkeypatch.setattr(optimize_module, "load_resolved", slow_load)
    space, runs = str(_space(tmp_path)), tmp_path / "runs"
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            outcome["run"] = run_search(space, name="c2", trials=3, strategy="sampled", runs_dir=runs, progress=False)
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=first, name="first")
    thread.start()
    try:
        assert started.wait(60)
        with pytest.raises(MtnasError, match=rf"another 'mtnas search' \(process {os.getpid()}\) is setting up"):
            run_search(space, name="c2", trials=3, strategy="sampled", runs_dir=runs, progress=False)
        assert _files(runs / "c2") == [".starting"]  # nothing of the first's was overwritten or made
    finally:
        go.set()
        thread.join(120)
    assert "error" not in outcome, outcome
    written = {name: (runs / "c2" / name).read_bytes() for name in ("run.json", "space.yaml")}
    with pytest.raises(MtnasError, match="exists already: use --resume"):
        run_search(space, name="c2", trials=3, strategy="sampled", runs_dir=runs, progress=False)
    assert {name: (runs / "c2" / name).read_bytes() for name in written} == written
    _, study = run_search("", name="c2", resume=True, trials=4, runs_dir=runs, progress=False)
    assert len(_completed(study)) == 4


def test_a_claim_left_by_a_killed_search_is_taken_over_with_a_line(tmp_path: Path, capfd: pytest.CaptureFixture,
                                                                   finished: Path) -> None:
    """A claim proves it is alive, or it is stale (more cases: tests/test_reliability_fourth.py)."""
    runs = tmp_path / "runs"
    (runs / "k").mkdir(parents=True)
    gone = _a_pid_that_is_gone()
    (runs / "k" / ".starting").write_text(json.dumps({"pid": gone, "host": socket.gethostname(), "start": 1}))
    capfd.readouterr()
    assert main(_sampled(tmp_path, "--trials", "2", name="k")) == 0
    err = capfd.readouterr().err
    assert f"a stale claim (process {gone} that wrote it is gone) is taken over" in err, err
    assert (runs / "k" / "run.json").is_file() and not (runs / "k" / ".starting").exists()
    copy = runs / "c"  # a run killed after its run.json: --resume takes the stale claim over
    shutil.copytree(finished, copy)
    (copy / ".starting").write_text(str(gone))
    assert main(["search", "--resume", "--name", "c", "--runs-dir", str(runs), "--quiet"]) == 0
    assert not (copy / ".starting").exists()


def _a_pid_that_is_gone() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- --timeout with local workers ---------------------------------------------------------------------------


def test_timeout_binds_the_local_workers_too(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert worker_command("journal:////j.log", "s", timeout=600.0)[-2:] == ["--timeout", "600.0"]
    # a timeout already spent: neither this process nor its worker starts a trial (before, the worker ran all 12)
    run, study = run_search(str(_space(tmp_path)), name="t", trials=12, strategy="sampled", workers=2,
                            timeout=1e-6, runs_dir=tmp_path, progress=False)
    assert _completed(study) == []
    assert "stopped the search after 0 of 12 trials" in capsys.readouterr().err
    assert isinstance(run, SearchRun) and optuna.trial.TrialState.RUNNING not in [t.state for t in study.trials]
