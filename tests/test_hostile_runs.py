"""Hostile run folders, stored studies and files, second pass: every case is one line on stderr
and exit 2, nothing hangs, and nothing is created outside the run or output folder.

The classes, each closed where the value enters (see the tables):

- stored strings that would become paths: a study name, an artifact id, a storage in run.json;
- a copied run folder (resumed as its own study, never re-run) and another space under a
  study's name (refused);
- damaged or edited run.json entries and trial attributes (strings for numbers, NaN, missing
  keys, invalid JSON in the database, garbage settings);
- special files where a file is expected (a FIFO, a device), numbers beyond float32 or beyond
  memory, names that cannot be names, weights of a dtype no parameter has;
- the minor ones: YAML base-60 numbers and repeated keys, NaN in --json, a closed pipe, a full
  disk, an unreachable database server, an unknown artifact scheme, --workers without a bound.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml

from mtnas.cli import main
from mtnas.study import run_search, worker_command
from tests.test_hostile_inputs import _arch_dict, _cli_error
from tests.test_study import _space

# --- a finished run, copied for each case -----------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of 3 completed trials (sampled strategy: seconds)."""
    root = tmp_path_factory.mktemp("finished")
    run_search(str(_space(root)), name="r", trials=3, strategy="sampled", runs_dir=root, progress=False)
    return root / "r"


@pytest.fixture
def run(finished_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished_run, tmp_path / "runs" / "r")
    return tmp_path / "runs" / "r"


def _edit_json(path: Path, change: Callable[[dict], Any]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _sql(run: Path, statement: str, *params: Any) -> None:
    with sqlite3.connect(run / "study.db") as db:
        assert db.execute(statement, params).rowcount >= 1, statement


def _set_attr(number: int, key: str, value_json: str) -> Callable[[Path], None]:
    """Overwrite a user attribute of trial ``number`` in the study's database, as raw JSON text."""
    return lambda run: _sql(run, "UPDATE trial_user_attributes SET value_json = ? WHERE key = ? AND trial_id = "
                                 "(SELECT trial_id FROM trials WHERE number = ?)", value_json, key, number)


def _set_run_json(**entries: Any) -> Callable[[Path], None]:
    return lambda run: _edit_json(run / "run.json", lambda d: d.update(entries))


def _drop_run_json(key: str) -> Callable[[Path], None]:
    return lambda run: _edit_json(run / "run.json", lambda d: d.pop(key))


def _write_run_json(text: str) -> Callable[[Path], None]:
    return lambda run: (run / "run.json").write_text(text)


def _set_study_attr(key: str, value_json: str) -> Callable[[Path], None]:
    return lambda run: _sql(run, "UPDATE study_user_attributes SET value_json = ? WHERE key = ?", value_json, key)


READ = ["trials", "{run}"]
RESUME = ["search", "--resume", "--name", "r", "--runs-dir", "{runs}", "--quiet"]

#: case -> (what is done to the run folder, the command, what its one error line says)
DAMAGED_RUNS: dict[str, tuple[Callable[[Path], None], list[str], str]] = {
    "run.json nested deep": (_write_run_json('{"storage": ' + "[" * 50_000 + "]" * 50_000 + "}"), READ,
                             "JSON nested 50001 levels deep"),
    "run.json key twice": (_write_run_json('{"study": "r", "study": "x", "storage": "s"}'), READ,
                           "the key 'study' appears twice"),
    "run.json without strategy": (_drop_run_json("strategy"), RESUME, "no strategy, which --resume needs"),
    "run.json string seed": (_set_run_json(seed="seven"), RESUME, "seed is 'seven', expected a whole number in 0.."),
    "run.json string trials": (_set_run_json(trials="3"), RESUME, "trials is '3', expected a whole number >= 1"),
    "run.json list objectives": (_set_run_json(objectives="delta_m"), RESUME, "objectives is 'delta_m', expected"),
    "run.json study is a path": (_set_run_json(study="../../../../elsewhere/x"), ["export", "{run}", "-o", "{out}"],
                                 "study is '../../../../elsewhere/x', expected a run name"),
    "trial flops a string": (_set_attr(2, "flops", '"lots"'), ["show", "{run}"],
                             "trial 2: flops is 'lots', expected a whole number >= 0"),
    "trial delta_m NaN": (_set_attr(2, "delta_m", "NaN"), ["report", "{run}"],
                          "trial 2: delta_m is nan, expected a finite number"),
    "trial without partitions": (lambda run: _sql(run, "DELETE FROM trial_user_attributes WHERE key = 'partitions'"),
                                 ["plot", "{run}", "-o", "{out}/t.png"], "a completed trial without partitions"),
    "trial value not JSON": (_set_attr(1, "tree", "{not json"), ["trials", "{run}", "--json"],
                             "cannot read the study from sqlite:///"),
    "study settings garbage": (_set_study_attr("mtnas", "[1, 2]"), ["export", "{run}", "-o", "{out}"],
                               "its mtnas settings are [1, 2], expected a mapping"),
    "study space garbage": (_set_study_attr("mtnas", '{"space": 3}'), ["show", "{run}"],
                            "its stored space is 3, expected a search space"),
    "artifact id with ..": (_set_attr(2, "artifacts", '{"arch.json": "../../../../escape"}'),
                            ["export", "sqlite:///{run}/study.db#r", "--trial", "2", "-o", "{out}"],
                            "the artifact id of arch.json is '../../../../escape', not an artifact id"),
    "trial tree of another task": (_set_attr(2, "partitions", '[[["a.b"]]]'),
                                   ["plot", "{run}", "--trial", "2", "-o", "{out}/t.png"],
                                   "study 'r' trial 2: its stored tree"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_RUNS))
def test_a_damaged_run_is_one_line_and_writes_nothing_outside(case: str, run: Path, tmp_path: Path,
                                                              capfd: pytest.CaptureFixture) -> None:
    damage, command, expected = DAMAGED_RUNS[case]
    fill = {"run": str(run), "runs": str(run.parent), "out": str(tmp_path / "out"), "tmp": str(tmp_path)}
    damage(run)
    outside = sorted(p.name for p in tmp_path.iterdir())
    err = _cli_error([part.format(**fill) for part in command], capfd)
    assert expected in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == outside  # no folder, no database created out there
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "out").exists()


def test_a_storage_elsewhere_in_run_json_is_never_opened_or_created(run: Path, tmp_path: Path,
                                                                    capfd: pytest.CaptureFixture) -> None:
    elsewhere = tmp_path / "elsewhere" / "x.db"
    elsewhere.parent.mkdir()
    _set_run_json(storage=f"sqlite:///{elsewhere}")(run)
    capfd.readouterr()
    assert main(["trials", str(run), "--json"]) == 0  # the folder's own study.db
    assert len(json.loads(capfd.readouterr().out)) == 3
    (run / "study.db").unlink()
    err = _cli_error(["trials", str(run)], capfd)
    assert f"the study's storage 'sqlite:///{elsewhere}' is not this folder's study.db" in err
    assert f"and {str(elsewhere)!r} does not exist" in err  # a storage truly elsewhere: how to name it
    assert (f"to use that storage, repeat it: mtnas trials 'sqlite:///{elsewhere}#r', or mtnas search --resume "
            f"--name r --storage 'sqlite:///{elsewhere}'") in err
    err = _cli_error(["trials", f"sqlite:///{elsewhere}#r"], capfd)  # named on purpose: read, still not created
    assert "no such file" in err and "nothing was created" in err
    assert list(elsewhere.parent.iterdir()) == []


def test_a_run_folder_read_by_its_copy_names_the_copys_files(run: Path, capfd: pytest.CaptureFixture) -> None:
    """A copy reads its own study.db (run.json records the original's); an error names the file read."""
    copy = run.parent / "copy"
    shutil.copytree(run, copy)
    (copy / "study.db").write_bytes(b"not a database" * 100)
    err = _cli_error(["trials", str(copy)], capfd)
    assert f"sqlite:///{copy.resolve()}/study.db" in err and "r/study.db" not in err.replace("copy/study.db", "")
    (copy / "study.db").unlink()  # a copy without its database: never the original's, silently
    err = _cli_error(["trials", str(copy)], capfd)
    assert "is not this folder's study.db (it is missing: was the folder copied without it?)" in err


def test_resuming_a_copied_run_continues_its_study_and_never_reruns_trials(run: Path, capfd: pytest.CaptureFixture
                                                                           ) -> None:
    copy = run.parent / "t0copy"
    shutil.copytree(run, copy)
    assert main(["search", "--resume", "--name", "t0copy", "--runs-dir", str(run.parent), "--trials", "4",
                 "--quiet"]) == 0, capfd.readouterr().err
    studies = optuna.get_all_study_names(f"sqlite:///{copy / 'study.db'}")
    assert studies == ["r", "r:evidence"]  # the study and its evidence: no new study named after the folder
    copied = optuna.load_study(study_name="r", storage=f"sqlite:///{copy / 'study.db'}")
    states = [t.state for t in copied.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4 and len(states) == 4  # one more, none again
    original = optuna.load_study(study_name="r", storage=f"sqlite:///{run / 'study.db'}")
    assert len(original.trials) == 3  # the original is untouched
    capfd.readouterr()
    assert main(["trials", str(copy), "--json"]) == 0
    assert [t["trial"] for t in json.loads(capfd.readouterr().out)] == [0, 1, 2, 3]


# --- what a search is started with ------------------------------------------------------------------


def test_a_search_of_another_space_under_a_studys_name_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture
                                                                  ) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    first = _space(tmp_path)
    other = tmp_path / "other.yaml"
    data = yaml.safe_load(first.read_text())
    data["tasks"] = data["tasks"][:3]
    other.write_text(yaml.safe_dump(data))
    base = ["--name", "s", "--storage", shared, "--workers", "0", "--quiet"]
    assert main(["search", str(first), *base, "--runs-dir", str(tmp_path / "a")]) == 0, capfd.readouterr().err
    err = _cli_error(["search", str(other), *base, "--runs-dir", str(tmp_path / "b")], capfd)
    assert "study 's' in sqlite:///" in err and "is a search of another space" in err and "digest" in err
    assert "choose another --name, or join it with 'mtnas worker'" in err
    assert main(["search", str(first), *base, "--runs-dir", str(tmp_path / "c")]) == 0  # the same space joins
    study = optuna.load_study(study_name="s", storage=shared)
    assert study.user_attrs["mtnas"]["space_name"] == "tiny_digit_gratings" and len(study.trials) == 2  # enqueued only


STARTS: dict[str, tuple[list[str], dict[str, str], str]] = {
    "gs scheme": (["--artifacts", "gs://bucket"], {}, "artifact store 'gs://bucket': unknown scheme 'gs'"),
    "http scheme": (["--artifacts", "http://host/x"], {}, "unknown scheme 'http'"),
    "relative file url": (["--artifacts", "file://rel/x"], {}, "a file URL names an absolute folder"),
    "bucket with a path": (["--artifacts", "s3://bucket/sub"], {}, "expected s3://BUCKET"),
    "unreachable endpoint": (["--artifacts", "s3://trials"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                                                               "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"},
                             "artifact store 's3://trials': cannot reach http://127.0.0.1:9"),
    "workers unbounded": (["--workers", "100000"], {}, "--workers: must be <= 64, got 100000"),
    "storage server down": (["--storage", "postgresql://user:secret@127.0.0.1:9/db"], {},
                            "the database server refused or did not answer"),
}


@pytest.mark.parametrize("case", sorted(STARTS))
def test_a_bad_start_is_one_line_before_any_trial(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capfd: pytest.CaptureFixture) -> None:
    args, env, expected = STARTS[case]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    space = _space(tmp_path)
    err = _cli_error(["search", str(space), "--name", "s", "--trials", "1", "--strategy", "sampled", "--quiet", *args],
                     capfd)
    assert expected in err, err
    assert "secret" not in err and "install the driver" not in err
    assert not (tmp_path / "gs:").exists() and not (tmp_path / "http:").exists()
    assert not (tmp_path / "runs" / "s" / "study.db").exists()  # no study, no trial


def test_a_missing_bucket_is_refused_before_the_first_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capfd: pytest.CaptureFixture) -> None:
    import socket

    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip("moto[server] is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        err = _cli_error(["search", str(_space(tmp_path)), "--name", "s", "--runs-dir", str(tmp_path), "--artifacts",
                          "s3://no-such-bucket", "--quiet"], capfd)
    finally:
        server.stop()
    assert "artifact store 's3://no-such-bucket': the bucket does not exist; create it" in err
    assert not (tmp_path / "s" / "study.db").exists()


# --- code through the import path --------------------------------------------------------------------


def test_local_workers_never_import_from_the_folder_a_search_starts_in(tmp_path: Path) -> None:
    """A ``yaml.py`` (or ``json.py``, ``optuna.py``) beside the user is not imported by a worker."""
    marker = tmp_path / "ran"
    for module in ("yaml", "json", "optuna", "torch", "numpy"):
        (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'a').write('{module} ')\n")
    (tmp_path / "mtnas").mkdir()
    (tmp_path / "mtnas" / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('mtnas ')\n")
    missing = f"sqlite:///{tmp_path / 'none' / 'x.db'}"
    env = {**os.environ, "PYTHONPATH": "", "MTNAS_PLUGINS": ""}
    worker = subprocess.run(worker_command(missing, "s", "cpu"), cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert worker.returncode == 2 and "no such file" in worker.stderr, worker.stderr  # it ran mtnas, and only mtnas
    assert not marker.exists(), marker.read_text()
    assert not (tmp_path / "none").exists()  # a worker never creates the storage it joins
    old = subprocess.run([sys.executable, "-m", "mtnas", "worker", "--storage", missing, "--study", "s"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert marker.exists(), old.stderr  # what `python -m` did: the folder's own modules ran first


# --- files where a file is expected, numbers and names in files --------------------------------------


def _arch(tmp_path: Path, change: Callable[[dict], Any] = lambda d: None, text: Callable[[str], str] = str) -> Path:
    data = _arch_dict()
    change(data)
    path = tmp_path / "arch.json"
    path.write_text(text(json.dumps(data)))
    return path


def _task_named(name: str) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        data["tasks"] = [name, "b"]
        data["partitions"] = [[[name, "b"]], [[name], ["b"]]]
        data["space"]["tasks"][0]["name"] = name

    return change


def _space_key(where: str, value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, leaf = where.split(".")
        node = data["space"]
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[leaf] = value

    return change


ARCH_FILES: dict[str, tuple[Callable[[Path], Path], list[str], str]] = {
    "lr beyond float32": (lambda t: _arch(t, _space_key("training.lr", 1e39)), ["retrain", "{arch}"],
                          "training.lr: 1e+39 is beyond float32's range"),
    "routing_lr beyond float32": (lambda t: _arch(t, _space_key("search.routing_lr", 1e39)), ["retrain", "{arch}"],
                                  "search.routing_lr: 1e+39 is beyond float32's range"),
    "num_outputs 1e15": (lambda t: _arch(t, _space_key("tasks.0.num_outputs", 10**15)), ["retrain", "{arch}"],
                         "tasks[0] (a).num_outputs: a linear head of 1,000,000,000,000,000 outputs on 4 features holds "
                         "at least 5,000,000,000,000,000 parameters (17.8 PiB of float32)"),
    "task a.b": (lambda t: _arch(t, _task_named("a.b")), ["retrain", "{arch}"], "task 'a.b' cannot be a task name"),
    "task ../../evil": (lambda t: _arch(t, _task_named("../../evil")), ["retrain", "{arch}"],
                        "task '../../evil' cannot be a task name"),
    "task lone surrogate": (lambda t: _arch(t, _task_named("\udc80")), ["plot", "{arch}"],
                            "cannot be a task name"),
    "task named like a module attribute": (lambda t: _arch(t, _task_named("training")), ["retrain", "{arch}"],
                                           "tasks[0].name: 'training' cannot be a task name"),
    "key twice": (lambda t: _arch(t, text=lambda s: s.replace('"version": 1', '"version": 1, "version": 1')),
                  ["show", "{arch}"], "the key 'version' appears twice in one JSON object"),
    "arch.json a FIFO": (lambda t: _fifo(t / "fifo.json"), ["retrain", "{arch}"],
                         "fifo.json: a FIFO (named pipe), not a regular file; expected a architecture file"),
}


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("case", sorted(ARCH_FILES))
def test_a_hostile_arch_json_is_refused_in_the_reader(case: str, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    make, command, expected = ARCH_FILES[case]
    arch = make(tmp_path)
    err = _cli_error([part.format(arch=arch) for part in command] + ["--quiet"] * (command[0] == "retrain"), capfd)
    assert expected in err, err
    assert not (tmp_path / "retrain").exists() and not (tmp_path / "tree.png").exists()


def _weights(tmp_path: Path, dtype: torch.dtype) -> tuple[Path, Path]:
    """An arch.json and a weights file for its tree, with every float tensor cast to ``dtype``."""
    from mtnas.model import load_model, save_weights
    from mtnas.tree import Architecture

    tmp_path.mkdir(exist_ok=True)
    arch = _arch(tmp_path)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_model(arch).state_dict().items()}
    return arch, save_weights(tmp_path / "w.safetensors", state, tree_key=Architecture.load(arch).tree.key)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool, torch.int64])
def test_weights_of_a_dtype_no_parameter_has_are_refused_not_cast(dtype: torch.dtype, tmp_path: Path,
                                                                  capfd: pytest.CaptureFixture) -> None:
    arch, weights = _weights(tmp_path, dtype)
    err = _cli_error(["retrain", str(arch), "--init", "inherited", "--weights", str(weights), "--quiet"], capfd)
    name = str(dtype).removeprefix("torch.")
    assert "weights do not fit the model" in err and "of a dtype the model's cannot take, refused rather than cast" in err
    assert f": {name}, expected float32" in err
    arch, weights = _weights(tmp_path / "half", torch.float16)  # a narrower float is a float: loaded
    from mtnas.model import load_model

    assert {p.dtype for p in load_model(arch, weights).parameters()} == {torch.float32}


SPECIAL_WEIGHTS = {
    "fifo .safetensors": lambda t: _fifo(t / "w.safetensors"),
    "fifo .pt": lambda t: _fifo(t / "w.pt"),
    "device .pt": lambda t: _link(t / "zero.pt", "/dev/zero"),
    "directory": lambda t: _mkdir(t / "d.safetensors"),
}


def _link(path: Path, target: str) -> Path:
    path.symlink_to(target)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("case", sorted(SPECIAL_WEIGHTS))
def test_a_special_file_as_backbone_weights_is_refused_without_reading(case: str, tmp_path: Path,
                                                                       capfd: pytest.CaptureFixture) -> None:
    weights = SPECIAL_WEIGHTS[case](tmp_path)
    space = _space(tmp_path)
    data = yaml.safe_load(space.read_text())
    data["backbone"]["weights"] = str(weights)
    space.write_text(yaml.safe_dump(data))
    err = _cli_error(["train", str(space), "--quiet"], capfd)  # it would hang on a FIFO, never end on /dev/zero
    kind = "is a directory" if case == "directory" else "a FIFO (named pipe)" if "fifo" in case else "a device"
    assert str(weights) in err and kind in err, err
    arch = _arch(tmp_path)
    err = _cli_error(["retrain", str(arch), "--init", "inherited", "--weights", str(weights), "--quiet"], capfd)
    assert kind in err, err


# --- the minor ones ----------------------------------------------------------------------------------


#: case -> (a change of the tiny space's YAML text, what the one error line of `mtnas train` says)
SPACES: dict[str, tuple[Callable[[str], str], str]] = {
    "sexagesimal": (lambda t: t.replace("training:\n  epochs: 1\n", "training:\n  epochs: 1:30\n"),
                    "training.epochs: expected int, got '1:30'"),
    "key twice": (lambda t: t.replace("seed: 0\n", "seed: 0\nseed: 1\n"),
                  "key 'seed' appears twice in one mapping (first on line"),
    "key twice in flow": (lambda t: t.replace("routing:\n  max_branches: 3\n", "routing: {max_branches: 3, "
                                              "max_branches: 2}\n"), "key 'max_branches' appears twice in one mapping"),
    "lr beyond float32": (lambda t: t.replace("lr: 0.005", "lr: 1.0e+39"), "training.lr: 1e+39 is beyond float32's range"),
    "routing_lr beyond float32": (lambda t: t.replace("search:\n", "search:\n  routing_lr: 1.0e+39\n"),
                                  "search.routing_lr: 1e+39 is beyond float32's range"),
    "task name with a dot": (lambda t: t.replace("- ge5\n", "- ge5.x\n"), "tasks[2].name: 'ge5.x' cannot be a name"),
    "task name a path": (lambda t: t.replace("- ge5\n", "- ../ge5\n"), "tasks[2].name: '../ge5' cannot be a name"),
}


@pytest.mark.parametrize("case", sorted(SPACES))
def test_a_space_file_is_read_as_written(case: str, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    change, expected = SPACES[case]
    text = _space(tmp_path).read_text()
    (tmp_path / "s.yaml").write_text(change(text))
    assert change(text) != text
    assert expected in _cli_error(["train", str(tmp_path / "s.yaml"), "--quiet"], capfd)


def test_merge_keys_may_override_and_base60_is_text_not_a_number() -> None:
    from mtnas.core import load_yaml_text

    assert load_yaml_text("b: &x {a: 1}\nc: {<<: *x, a: 2}\n", "s") == {"b": {"a": 1}, "c": {"a": 2}}
    assert load_yaml_text("t: 1:30\nf: 1:30.5\nn: 90\nx: 0x10\n", "s") == {"t": "1:30", "f": "1:30.5", "n": 90, "x": 16}


def test_json_output_never_holds_nan(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    arch = _arch(tmp_path, lambda d: d.update(metrics={"delta_m": float("nan"), "val": {"a": {"accuracy": 0.5}}}))
    capfd.readouterr()
    assert main(["show", str(arch), "--json"]) == 0
    out = capfd.readouterr().out
    assert "NaN" not in out
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert data["metrics"] == {"delta_m": None, "val": {"a": {"accuracy": 0.5}}}


def test_a_closed_pipe_ends_quietly_with_status_0() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before mtnas writes a byte (as `mtnas spaces | head -0` does)
    try:
        proc = subprocess.run([sys.executable, "-m", "mtnas", "spaces"], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_full_disk_names_the_file_it_was_writing(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capfd: pytest.CaptureFixture) -> None:
    import errno

    from mtnas.core import _io

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # as write() and fsync() raise it: no file named

    monkeypatch.setattr(_io.os, "fsync", no_space)
    err = _cli_error(["export", str(run), "-o", str(tmp_path / "out")], capfd)
    assert f"No space left on device ({tmp_path / 'out' / 'arch.json'}); free some space there" in err, err
    assert "nothing else was changed" not in err
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temporary file left behind


def test_reading_from_a_database_server_that_does_not_answer_says_so(capfd: pytest.CaptureFixture) -> None:
    err = _cli_error(["trials", "postgresql://user:pw@127.0.0.1:9/db#dg1"], capfd)
    assert "cannot open the study storage 'postgresql://user:***@127.0.0.1:9/db'" in err
    assert "the database server refused or did not answer" in err and "Connection refused" in err
    assert "install" not in err and ":pw@" not in err


def test_a_study_name_that_is_a_path_stays_inside_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored study name is a name: the cache folder of ``../../x`` is a digest, inside the cache."""
    from mtnas.study import artifact_cache, fetch_trial_file

    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path / "cache"))
    store = tmp_path / "store"
    store.mkdir()
    (store / "0123abcd").write_text("{}")
    study = optuna.create_study(study_name="../../../../elsewhere/x", storage=f"sqlite:///{tmp_path / 's.db'}")
    trial = study.ask()
    trial.set_user_attr("artifacts", {"arch.json": "0123abcd"})
    path = fetch_trial_file(study, study.trials[0], "arch.json", str(store))
    assert path.read_text() == "{}" and artifact_cache().resolve() in path.resolve().parents
    assert not (tmp_path / "elsewhere").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "cache", "s.db", "store"]


def test_a_trial_failed_under_its_live_process_does_not_end_the_search(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process fails a running trial (its heartbeat went stale on a busy machine) and
    enqueues its retry: the process running it goes on, and the study still ends with N trials."""
    from mtnas.study import _optimize

    real, taken = _optimize.evaluate_trial, []

    def stale_once(trial: optuna.Trial, *args: Any) -> Any:
        if not taken:  # what fail_stale_trials and its retry callback do from elsewhere
            taken.append(trial.number)
            trial.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            trial.study.enqueue_trial(trial.params, user_attrs={"fixed_tree": trial.user_attrs["fixed_tree"]})
        return real(trial, *args)

    monkeypatch.setattr(_optimize, "evaluate_trial", stale_once)
    _, study = run_search(str(_space(tmp_path)), name="r", trials=3, strategy="sampled", runs_dir=tmp_path,
                          progress=False)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3 and optuna.trial.TrialState.RUNNING not in states
    assert study.trials[taken[0]].state == optuna.trial.TrialState.FAIL
