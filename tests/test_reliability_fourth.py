"""Reliability, fourth pass: each class closed where the value enters, table by table.

- The baselines cache and the data: a dataset regenerated under the same name gets baselines of
  its own (the cache is keyed by ``mtnas.data.data_digest``, as the units of evidence are).
- A task with no labelled sample, and masks: refused where the bundle enters, naming the split and
  the task (``tests/datasets/test_bundle_checks.py``); a search leaves no run folder behind.
- The run folder's own files, edited: a ``.starting`` claim proves it is alive or is taken over
  with a line; ``run.json`` naming another study is refused on ``--resume``; an ``arch.json``
  replaced by another trial's is refused by ``mtnas export``.
- Runs on a storage of one's own (``--storage sqlite:///shared.db``, ``sqlite:///rel.db``,
  ``journal:///rel.log``): read and resumed through their folder; a read never creates one.
- The minor ones: a blank ``MTNAS_CACHE_DIR`` or ``--runs-dir``, an unknown storage scheme,
  ``spaces --yaml --json``, a space's section errors without torch, a stored tree label edited, a
  truncated journal, one run compared with itself, a dataset function that raises.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from mtnas.cli import main
from mtnas.core import DamagedEntryWarning, MtnasError, MtnasWarning, cache_dir, process_start, write_checked
from mtnas.data import DatasetBundle, TaskData, TaskInfo, data_digest
from mtnas.data.datasets import register_dataset
from mtnas.study import run_search
from mtnas.study._claim import STARTING, check_not_starting, claim_new_run
from mtnas.train import compute_baselines, proxy_space
from tests.datasets._tiny_factory import isolate_plugins
from tests.test_hostile_inputs import _cli_error
from tests.test_hostile_runs import _edit_json, finished_run  # noqa: F401  (a fixture)
from tests.test_study import _completed, _space

CPU = torch.device("cpu")
HOST = socket.gethostname()
DRAW_ENV = "MTNAS_TEST_DRAW"  # which samples the regenerated dataset draws


@pytest.fixture
def run(finished_run: Path, tmp_path: Path) -> Path:  # noqa: F811
    """A copy, for each case, of a finished run folder of 3 trials (tests/test_hostile_runs.py)."""
    shutil.copytree(finished_run, tmp_path / "runs" / "r")
    return tmp_path / "runs" / "r"


# --- 1. the baselines cache and the data --------------------------------------------------------------------


def _regenerated(*, seed: int = 0, n: int = 64) -> DatasetBundle:
    """A user's dataset whose samples are drawn anew (``$MTNAS_TEST_DRAW``) under one name."""
    g = torch.Generator().manual_seed(1000 * int(os.environ.get(DRAW_ENV, "0")) + seed)

    def split() -> TaskData:
        x = torch.randn(n, 6, generator=g)
        return TaskData(x, {"a": (x[:, 0] > 0).long(), "b": (x[:, 1] + x[:, 2] > 0).long()})

    return DatasetBundle(split(), split(), split(), (TaskInfo("a", "classification", 2),
                                                     TaskInfo("b", "classification", 2)))


@pytest.fixture
def regen_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_plugins(monkeypatch)
    register_dataset("regen")(_regenerated)
    path = tmp_path / "regen.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": "regen"}, "tasks": ["a", "b"],
                                    "backbone": {"name": "mlp", "layers": [{"width": 8}, {"width": 8}]},
                                    "training": {"epochs": 1, "batch_size": 32}}))
    return path


def _train_delta_m(space: Path, capfd: pytest.CaptureFixture) -> dict:
    capfd.readouterr()
    assert main(["train", str(space), "--quiet", "--json"]) == 0, capfd.readouterr().err
    return json.loads(capfd.readouterr().out)["delta_m"]


#: how the baselines are reached -> what a regenerated dataset must get: the figures of a fresh cache
def _by_library(space: Path, capfd: pytest.CaptureFixture) -> object:
    from mtnas.space import load_resolved

    resolved, bundle = load_resolved(str(space))
    found = compute_baselines(proxy_space(resolved), bundle, device=CPU, seed=0)
    return found.data, {s: (found.metrics(s), found.all_shared.val if s == "val" else found.all_shared.test)
                        for s in ("val", "test")}  # every figure but the seconds trained


WAYS: dict[str, Callable[[Path, pytest.CaptureFixture], object]] = {
    "compute_baselines": _by_library,
    "mtnas train (delta-m)": _train_delta_m,
}


@pytest.mark.parametrize("way", list(WAYS))
def test_a_dataset_regenerated_under_its_name_gets_fresh_baselines(way: str, regen_space: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capfd: pytest.CaptureFixture) -> None:
    """The stale cache printed the old data's delta-m (-11.41% where a fresh cache gives -4.62%)."""
    figures = WAYS[way]
    first = figures(regen_space, capfd)  # draw 0: trained and cached
    monkeypatch.setenv(DRAW_ENV, "1")  # the same name, other samples
    again = figures(regen_space, capfd)
    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path / "fresh"))
    fresh = figures(regen_space, capfd)
    assert again == fresh and again != first
    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path / "fresh"))
    monkeypatch.setenv(DRAW_ENV, "0")
    assert figures(regen_space, capfd) == first  # each dataset keeps its own entry


def test_cached_baselines_of_another_dataset_are_not_used(regen_space: Path) -> None:
    from mtnas.space import load_resolved

    resolved, bundle = load_resolved(str(regen_space))
    compute_baselines(proxy_space(resolved), bundle, device=CPU, seed=0)
    (path,) = (cache_dir() / "baselines").glob("*.json")
    stored = json.loads(path.read_text())["content"]
    assert stored["data"] == data_digest(bundle) and stored["data"][:16] in path.name

    write_checked(path, {**stored, "data": "0" * 64})  # an entry moved here from another dataset's
    with pytest.warns(DamagedEntryWarning, match=r"baselines of the dataset '0000.*', expected"):
        compute_baselines(proxy_space(resolved), bundle, device=CPU, seed=0)


# --- 4. a task with no labelled sample: a search leaves nothing behind ----------------------------------------


def test_a_search_on_a_task_without_labels_is_one_line_and_leaves_the_name_free(
        regen_space: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    """Before: a KeyError traceback, and runs/NAME left behind (the name taken)."""

    @register_dataset("unlabelled")
    def unlabelled(*, seed: int = 0) -> DatasetBundle:
        bundle = _regenerated(seed=seed)
        train = TaskData(bundle.train.inputs, bundle.train.targets, {"b": torch.zeros(64, dtype=torch.bool)})
        return DatasetBundle(train, bundle.val, bundle.test, bundle.tasks)

    _edit_yaml(regen_space, lambda d: d["dataset"].update(name="unlabelled"))
    err = _cli_error(["search", str(regen_space), "--name", "u", "--runs-dir", str(tmp_path / "runs"), "--strategy",
                      "sampled", "--quiet"], capfd)
    assert ("dataset 'unlabelled': the train split, task 'b': no sample is labelled (its mask is all False), so the "
            "task cannot be learnt") in err
    assert not (tmp_path / "runs" / "u").exists()


def _edit_yaml(path: Path, change: Callable[[dict], object]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_a_dataset_function_that_raises_is_its_own_error_in_one_line(regen_space: Path,
                                                                    capfd: pytest.CaptureFixture) -> None:
    """Before: its traceback, exit 1, as if mtnas had failed."""

    @register_dataset("broken")
    def broken(*, seed: int = 0) -> DatasetBundle:
        raise ValueError("my data is broken")

    _edit_yaml(regen_space, lambda d: d["dataset"].update(name="broken"))
    err = _cli_error(["train", str(regen_space), "--quiet"], capfd)
    assert err == (f"mtnas: error: dataset 'broken' ({__name__}:{broken.__qualname__}) failed in its own code: "
                   "ValueError: my data is broken; fix the dataset function (--debug shows its traceback)\n")
    assert main(["train", str(regen_space), "--quiet", "--debug"]) == 2
    err = capfd.readouterr().err
    assert "Traceback" in err and 'raise ValueError("my data is broken")' in err


# --- 5. the run folder's own files, edited --------------------------------------------------------------------


def _mkdir(path: Path) -> None:
    path.mkdir()


#: what .starting holds -> what the line taking it over says
STALE_CLAIMS: dict[str, tuple[Callable[[Path], object], str]] = {
    "a huge number": (lambda p: p.write_text("9" * 400), "not a claim of a running search"),  # was OverflowError
    "1": (lambda p: p.write_text("1"), "it holds '1', not a claim of a running search"),  # init: alive, not a claim
    "nothing": (lambda p: p.write_text(""), "it holds '', not a claim of a running search"),
    "abc": (lambda p: p.write_text("abc"), "it holds 'abc', not a claim of a running search"),
    "a gone process's claim": (lambda p: p.write_text(json.dumps({"pid": _a_pid_that_is_gone(), "host": HOST,
                                                                   "start": 1})), "that wrote it is gone"),
    "a live process of another start": (lambda p: p.write_text(json.dumps(
        {"pid": os.getpid(), "host": HOST, "start": (process_start(os.getpid()) or 0) + 1})),
        f"process {os.getpid()} that wrote it is gone"),  # its id reused by another process
    "another host's, long ago": (lambda p: (p.write_text(json.dumps({"pid": 5, "host": "elsewhere", "start": 1})),
                                            os.utime(p, (0, 0))), "process 5 on elsewhere wrote it"),
}


def _a_pid_that_is_gone() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("resume", [False, True], ids=["new search", "--resume"])
@pytest.mark.parametrize("case", list(STALE_CLAIMS))
def test_a_claim_that_does_not_prove_it_is_alive_is_taken_over_with_a_line(case: str, resume: bool,
                                                                           tmp_path: Path) -> None:
    """Before: "another search is setting up this run right now", forever (an OverflowError for a huge number)."""
    root = tmp_path / "r"
    root.mkdir()
    write, reason = STALE_CLAIMS[case]
    write(root / STARTING)
    with pytest.warns(MtnasWarning, match="a stale claim") as caught:
        if resume:
            assert check_not_starting(root) is True  # its setting up never finished
        else:
            with claim_new_run(root):
                assert json.loads((root / STARTING).read_text())["pid"] == os.getpid()
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"{root / STARTING}: a stale claim (") and reason in message, message
    assert message.endswith(") is taken over")
    assert sorted(p.name for p in root.iterdir()) == []  # the claim gone, nothing else left


def _live_claim(path: Path) -> None:
    from mtnas.study._claim import _create_claim

    _create_claim(path.parent)


#: a claim that holds -> what the refusal says
HELD_CLAIMS: dict[str, tuple[Callable[[Path], object], str]] = {
    "this process's": (_live_claim,
                       f"another 'mtnas search' (process {os.getpid()}) is setting up a run of this name right now"),
    "another host's, recent": (lambda p: p.write_text(json.dumps({"pid": 5, "host": "elsewhere", "start": 1})),
                               "another 'mtnas search' (process 5 on elsewhere) is setting up"),
    "a folder": (_mkdir, f"{STARTING} is a folder or a special file, not a claim file: it is no claim mtnas wrote; "
                         "remove it"),
}


@pytest.mark.parametrize("resume", [False, True], ids=["new search", "--resume"])
@pytest.mark.parametrize("case", list(HELD_CLAIMS))
def test_a_live_claim_is_held_and_an_unreadable_one_is_named(case: str, resume: bool, tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    write, expected = HELD_CLAIMS[case]
    write(root / STARTING)
    with pytest.raises(MtnasError) as caught:
        if resume:
            check_not_starting(root)
        else:
            with claim_new_run(root):
                pass
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert (root / STARTING).exists()  # left as it was


def test_a_stale_claim_on_a_finished_run_is_taken_over_by_resume(run: Path, capfd: pytest.CaptureFixture) -> None:
    (run / STARTING).write_text("1")
    capfd.readouterr()
    assert main(["search", "--resume", "--name", "r", "--runs-dir", str(run.parent), "--trials", "4", "--quiet"]) == 0
    err = capfd.readouterr().err
    assert f"mtnas: warning: {run / STARTING}: a stale claim (it holds '1', not a claim of a running search) is " \
           "taken over\n" in err, err
    assert not (run / STARTING).exists()


def test_resume_refuses_a_run_json_naming_another_study(run: Path, capfd: pytest.CaptureFixture) -> None:
    """Before: --resume created the study 'other' and ran a whole new search."""
    _edit_json(run / "run.json", lambda d: d.update(study="other"))
    before = optuna.get_all_study_names(f"sqlite:///{run / 'study.db'}")
    err = _cli_error(["search", "--resume", "--name", "r", "--runs-dir", str(run.parent), "--quiet"], capfd)
    assert f"{run}: the study 'other' is missing from sqlite:///" in err and "never starts one" in err
    assert optuna.get_all_study_names(f"sqlite:///{run / 'study.db'}") == before
    err = _cli_error(["trials", str(run)], capfd)  # as the commands that read it say
    assert f"{run}: the study 'other' is missing from" in err


def test_export_refuses_an_arch_json_replaced_by_another_trials(run: Path, tmp_path: Path,
                                                               capfd: pytest.CaptureFixture) -> None:
    """Before: trial 2's figures on the independent tree."""
    shutil.copyfile(run / "trials" / "0001" / "arch.json", run / "trials" / "0002" / "arch.json")
    err = _cli_error(["export", str(run), "--trial", "2", "-o", str(tmp_path / "out")], capfd)
    assert f"{run / 'trials' / '0002' / 'arch.json'}: its tree (0-3: each) is not the one trial 2 evaluated (" in err
    assert "the file was replaced or edited" in err and not (tmp_path / "out").exists()
    capfd.readouterr()
    assert main(["export", str(run), "--trial", "1", "-o", str(tmp_path / "out"), "--json"]) == 0  # its own: fine
    assert json.loads(capfd.readouterr().out)["tree"] == "0-3: each"


# --- 6. runs on a storage of one's own -----------------------------------------------------------------------

#: --storage as written -> the file it names, relative to the folder the search starts in
OWN_STORAGES = {"sqlite:///{here}/shared.db": "shared.db", "sqlite:///rel.db": "rel.db",
                "journal:///rel.log": "rel.log"}


@pytest.mark.parametrize("storage", list(OWN_STORAGES))
def test_a_run_on_a_storage_of_its_own_is_read_and_resumed_through_its_folder(
        storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    """Before: "the study's storage ... is not this folder's study.db (it is missing: was the folder copied
    without it?)" for every read and for --resume."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(here)
    runs = here / "runs"
    given = storage.format(here=here)
    assert main(["search", str(_space(tmp_path)), "--name", "s", "--runs-dir", str(runs), "--strategy", "sampled",
                 "--trials", "2", "--storage", given, "--quiet"]) == 0, capfd.readouterr().err
    monkeypatch.chdir(elsewhere)  # read from another folder: the storage is recorded absolute
    capfd.readouterr()
    assert main(["trials", str(runs / "s"), "--json"]) == 0, capfd.readouterr().err
    assert [t["state"] for t in json.loads(capfd.readouterr().out)] == ["COMPLETE", "COMPLETE"]
    assert main(["export", str(runs / "s"), "--trial", "1", "-o", str(tmp_path / "out")]) == 0, capfd.readouterr().err
    assert (tmp_path / "out" / "arch.json").is_file()
    assert main(["search", "--resume", "--name", "s", "--runs-dir", str(runs), "--trials", "3", "--quiet"]) == 0, \
        capfd.readouterr().err
    recorded = json.loads((runs / "s" / "run.json").read_text())["storage"]
    assert recorded.endswith(f"{here}/{OWN_STORAGES[storage]}")  # recorded absolute
    if recorded.startswith("sqlite"):
        assert len(_completed(optuna.load_study(study_name="s", storage=recorded))) == 3
    assert not (runs / "s" / "study.db").exists() and not (runs / "s" / "journal.log").exists()
    (here / OWN_STORAGES[storage]).unlink()  # the storage gone: refused, and never created by a read
    err = _cli_error(["trials", str(runs / "s")], capfd)
    assert "does not exist" in err and f"to use that storage, repeat it: mtnas trials '{recorded}#s', or mtnas " \
           f"search --resume --name s --storage '{recorded}'" in err, err
    assert not (here / OWN_STORAGES[storage]).exists()


# --- the minor ones ------------------------------------------------------------------------------------------

#: a command -> its one error line (exit 2)
MINOR_ERRORS: dict[str, tuple[list[str], str]] = {
    "--runs-dir ''": (["search", "{space}", "--runs-dir", "", "--quiet"],
                      "--runs-dir '' is empty; give the folder where run folders live, e.g. --runs-dir runs"),
    "--storage bogus://x": (["search", "{space}", "--runs-dir", "{tmp}/runs", "--storage", "bogus://x", "--quiet"],
                            "cannot open the study storage 'bogus://x': unknown storage scheme 'bogus'; valid: "
                            "sqlite:///FILE, journal:///FILE, postgresql://USER@HOST/DB"),
    "spaces --yaml --json": (["spaces", "digit_gratings", "--yaml", "--json"],
                             "--yaml prints a space's YAML file and --json the list of spaces as JSON: give one"),
}


@pytest.mark.parametrize("case", list(MINOR_ERRORS))
def test_a_minor_misuse_is_one_line(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capfd: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    command, expected = MINOR_ERRORS[case]
    fill = {"space": str(_space(tmp_path)), "tmp": str(tmp_path)}
    err = _cli_error([part.format(**fill) for part in command], capfd)
    assert expected in err, err
    assert not (tmp_path / "runs" / "tiny").exists() and not list(tmp_path.glob("*.db"))  # no run, no database


@pytest.mark.parametrize("value", ["   ", "\t"])
def test_a_blank_cache_folder_is_the_default_one(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTNAS_CACHE_DIR", value)
    assert cache_dir() == Path.home() / ".cache" / "mtnas"


#: a section's fault -> the error, which must come before torch is imported
SECTION_FAULTS: dict[str, tuple[dict, str]] = {
    "a misspelt training key": ({"training": {"lrr": 1}}, "training: unknown key 'lrr' (did you mean 'lr'?)"),
    "a fractional epoch count": ({"training": {"epochs": 1.5}}, "training.epochs: expected int, got 1.5"),
    "no task": ({"tasks": []}, "tasks: a space needs at least one task"),
    "a search range upside down": ({"search": {"ranges": {"tau0": [3, 1]}}}, "search.ranges.tau0: low 3.0 is above"),
    "a misspelt search key": ({"search": {"epoch": 3}}, "search: unknown key 'epoch' (did you mean 'epochs'?)"),
    "a task's weight below 0": ({"tasks": [{"name": "digit", "weight": -1}]}, "tasks[0].weight: must be >= 0.0"),
}


@pytest.mark.parametrize("case", list(SECTION_FAULTS))
def test_a_key_or_type_error_inside_a_section_comes_before_torch(case: str, tmp_path: Path) -> None:
    """Before: the sections after the backbone were checked only once torch was imported (3-4 s)."""
    change, expected = SECTION_FAULTS[case]
    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump({"dataset": {"name": "digit_gratings"}, "tasks": ["digit"],
                                     "backbone": {"name": "mlp", "layers": [{"width": 8}]}, **change}))
    code = ("import sys; from mtnas.cli import main; "
            f"code = main(['train', {str(space)!r}, '--quiet']); print(code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr


def test_trials_labels_each_tree_from_the_stored_tree_not_its_edited_label(run: Path,
                                                                          capfd: pytest.CaptureFixture) -> None:
    with sqlite3.connect(run / "study.db") as db:
        db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'tree' AND trial_id = "
                   "(SELECT trial_id FROM trials WHERE number = 1)", (json.dumps("0-3: all"),))
    capfd.readouterr()
    assert main(["trials", str(run), "--json"]) == 0
    assert [t["tree"] for t in json.loads(capfd.readouterr().out)][:2] == ["0-3: all", "0-3: each"]
    from mtnas.report._study_plots import pareto_plot_data
    from mtnas.study import SearchRun, load_study

    points = pareto_plot_data(load_study(SearchRun.open(run))).points
    assert [p.tree for p in points if p.trial == 1] == ["0-3: each"]


def test_a_truncated_journal_is_read_with_a_warning(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """Before: an empty table, and no word that the journal lost its records."""
    journal = tmp_path / "j.log"
    run_search(str(_space(tmp_path)), name="j", trials=2, strategy="sampled", storage=f"journal:///{journal}",
               runs_dir=tmp_path / "runs", progress=False)
    with open(journal, "r+b") as f:
        f.truncate(200)
    capfd.readouterr()
    assert main(["trials", str(tmp_path / "runs" / "j")]) == 0
    err = capfd.readouterr().err
    assert err == (f"mtnas: warning: {journal}: the journal ends in an incomplete record (truncated, or being written "
                   "right now): what follows its last complete record is not read; restore it from a copy if it was "
                   "cut\n"), err


def test_one_run_compared_with_itself_gets_a_note(run: Path, tmp_path: Path) -> None:
    from mtnas.report import compare_data

    url = f"sqlite:///{run.resolve() / 'study.db'}#r"
    notes = compare_data([str(run), str(run), url]).notes
    assert f"{run} is given twice: it is compared with itself" in notes
    assert f"{url} is the same run as {run}: it is compared with itself" in notes
    copy = tmp_path / "copy"  # a copy is another run (its own study.db): no such note
    shutil.copytree(run, copy)
    assert not [n for n in compare_data([str(run), str(copy)]).notes if "itself" in n]
