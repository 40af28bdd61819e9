"""Units of evidence: claims that prove they are alive, entries checked wherever they are stored,
weights bound to their unit (issue 32, classes 2 and 3 and the store's minor faults), and the
store faults of issue 31 (reads per poll, damaged baselines, two processes breaking one lock).

Each table row asserts the outcome (taken over, held, trained again, not used) and the one line
that says so.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

import mtnas.train._evidence as evidence_module
from mtnas.core import DamagedEntryWarning, MtnasWarning, process_start, seal
from mtnas.model import Cost, save_weights
from mtnas.search import Evidence, LocalStore, Trained, Unit
from mtnas.space import load_space
from mtnas.study._storage import open_storage
from mtnas.study._study_store import StudyStore
from mtnas.train import Baselines, TreeResult, checked_result
from mtnas.tree import BranchingTree
from tests.test_trained_search import _small

HOST = socket.gethostname()
KEY = "ab" + "0" * 62
PARENT = os.getppid()  # a live process of this host that is not mtnas


def _claim(pid: int = PARENT, start: int | None | str = "auto", host: str = HOST, **more: Any) -> dict[str, Any]:
    start = process_start(pid) if start == "auto" else start
    return {"host": host, "pid": pid, "start": start, "token": "t", **more}


def _aged(seconds: float) -> Callable[[Path], None]:
    def age(path: Path) -> None:
        then = time.time() - seconds
        os.utime(path, (then, then))

    return age


def _write(content: bytes | dict, then: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    def write(lock: Path) -> None:
        lock.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        if then is not None:
            then(lock)

    return write


def _one_line(record: list, needle: str) -> str:
    (line,) = [str(w.message) for w in record if needle in str(w.message)]
    assert "\n" not in line
    return line


# -- 2. claims that never went stale ---------------------------------------------------------------

STALE_LOCKS = {
    "empty (killed between create and write)": (_write(b"", _aged(10)), "it is empty"),
    '{"pid": 1}': (_write({"pid": 1}), "it names no host (process 1)"),
    '{"pid": "abc"}': (_write({"pid": "abc"}), "its process id 'abc' is no process's"),
    '{"pid": -1}': (_write({"pid": -1}), "its process id -1 is no process's"),
    '{"pid": 0}': (_write({"pid": 0}), "its process id 0 is no process's"),
    "pid 2**40": (_write({"host": HOST, "pid": 2**40}), f"its process id {2**40} is no process's"),
    "text": (_write(b"garbage"), "it holds 'garbage', not a claim mtnas wrote"),
    "a live process that did not write it": (_write(_claim(start=1)),
                                             f"process id {PARENT} names another process than the one that wrote it"),
    "a live process, no token (an older mtnas, a hand)": (_write({"host": HOST, "pid": PARENT}),
                                                          f"it carries no token (process {PARENT}"),
    "a killed claimant": (lambda lock: _write(_claim(pid=_dead_pid(), start=None))(lock), "that wrote it is gone"),
    "another host, no heartbeat for 300 s": (_write(_claim(4242, host="elsewhere", start=5), _aged(300)),
                                             "no heartbeat from elsewhere:4242 for 300 s"),
    "a heartbeat in the future": (_write(_claim(), lambda p: os.utime(p, (1e12, 1e12))), "s in the future"),
    "a folder": (lambda lock: lock.mkdir(), "it is a folder or a special file, not a lock file"),
}


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


@pytest.mark.parametrize("make, says", STALE_LOCKS.values(), ids=STALE_LOCKS.keys())
def test_a_lock_that_does_not_prove_it_is_alive_is_taken_over_with_a_line(tmp_path, make, says) -> None:
    store = LocalStore(tmp_path)
    lock = store._path(KEY, ".lock")
    lock.parent.mkdir(parents=True)
    make(lock)
    with pytest.warns(MtnasWarning) as record:
        assert store.claim(KEY)
    line = _one_line(record, "stale claim")
    assert line == f"{lock}: a stale claim ({says}) is taken over" or (says in line and line.startswith(f"{lock}: "))
    assert store.holder(KEY) == f"{HOST}:{os.getpid()}"  # the lock is this process's now
    store.release(KEY)
    assert not os.path.lexists(lock) and [p.name for p in lock.parent.iterdir()] == [".claiming"]


LIVE_LOCKS = {
    "a live mtnas process of this host": (_claim(), f"{HOST}:{PARENT}"),
    "another host, beating": (_claim(4242, host="elsewhere", start=5), "elsewhere:4242"),
}


@pytest.mark.parametrize("claim, holder", LIVE_LOCKS.values(), ids=LIVE_LOCKS.keys())
def test_a_live_lock_is_held_and_named(tmp_path, claim, holder, recwarn) -> None:
    store = LocalStore(tmp_path)
    lock = store._path(KEY, ".lock")
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps(claim))
    assert not store.claim(KEY) and store.holder(KEY) == holder
    assert json.loads(lock.read_text()) == claim and not recwarn.list


def test_the_owner_beats_its_lock_and_a_lock_that_stops_beating_is_taken_over(tmp_path) -> None:
    owner, other = LocalStore(tmp_path), LocalStore(tmp_path)
    owner.beat_every, other.stale_after = 0.05, 1.0
    assert owner.claim(KEY)
    lock = owner._path(KEY, ".lock")
    _aged(600)(lock)
    deadline = time.monotonic() + 30
    while time.time() - lock.stat().st_mtime > 1.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert time.time() - lock.stat().st_mtime < 1.0  # beaten again
    assert not other.claim(KEY)
    with owner._guard:  # the owner stops beating (hung, or its host unreachable)
        token = owner._held.pop(KEY)
    time.sleep(1.3)
    with pytest.warns(MtnasWarning, match=r"a stale claim \(no heartbeat from .* for \d+ s\) is taken over"):
        assert other.claim(KEY)
    owner._held[KEY] = token
    owner.release(KEY)  # another's lock now: left alone
    assert other.holder(KEY) == f"{HOST}:{os.getpid()}" and lock.exists()


def test_a_waiting_search_says_what_it_waits_for_then_takes_a_silent_claim_over(tmp_path, capsys) -> None:
    space, bundle = _small()
    unit = Unit(BranchingTree.all_shared(space.task_names, 4), 1, seed=0)
    store = LocalStore(tmp_path)
    store.stale_after = 1.5
    evidence = Evidence(space, bundle, store=store, progress=True, poll=0.05)
    evidence.wait_line_every = 0.4
    key = evidence.key(unit)
    lock = store._path(key, ".lock")
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps(_claim(4242, host="elsewhere", start=5)))
    with pytest.warns(MtnasWarning, match=r"no heartbeat from elsewhere:4242 for \d+ s\) is taken over"):
        (found,) = evidence.obtain([unit])
    assert evidence.trained == 1 and found.unit == unit
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("waiting")]
    said = rf"waiting for unit {key[:12]} \({re.escape(unit.describe())}\) trained by elsewhere:4242 for (\d+) s"
    assert len(lines) >= 2 and all(re.fullmatch(said, line) for line in lines)
    assert int(re.fullmatch(said, lines[-1])[1]) >= 1


def _study(tmp_path: Path, name: str = "journal.log") -> StudyStore:
    (tmp_path / "artifacts").mkdir(exist_ok=True)
    return StudyStore(open_storage(f"journal:///{tmp_path / name}"), "s", str(tmp_path / "artifacts"))


def _add_trial(store: StudyStore, state: TrialState, system_attrs: dict, user_attrs: dict | None = None) -> None:
    store._storage.create_new_trial(store._study_id, template_trial=optuna.trial.create_trial(
        state=state, values=[0.0] if state == TrialState.COMPLETE else None, system_attrs=system_attrs,
        user_attrs=user_attrs or {}))


#: Each case as made when its test runs (a beat "300 s ago" is measured from then, not from the collection).
STALE_TRIALS = {
    "pid 1, no beat": lambda: ({"host": HOST, "pid": 1}, "it has no heartbeat (None)"),
    'a beat of "now"': lambda: ({**_claim(), "beat": "now"}, "it has no heartbeat ('now')"),
    "a beat in the future": lambda: ({**_claim(), "beat": 1e12}, "s in the future"),
    'pid "abc"': lambda: ({"host": HOST, "pid": "abc", "beat": time.time() + 3600}, "its process id 'abc' is no process's"),
    "another host, no beat for 300 s": lambda: ({"host": "elsewhere", "pid": 4242, "beat": time.time() - 300},
                                        "no heartbeat from elsewhere:4242 for 3"),
    "a killed worker of this host": lambda: ({"host": HOST, "pid": 2**22 + 7, "beat": time.time() + 3600},
                                     f"process {2**22 + 7} that wrote it is gone"),
}


@pytest.mark.parametrize("case", STALE_TRIALS.values(), ids=STALE_TRIALS.keys())
def test_a_study_claim_that_does_not_prove_it_is_alive_is_taken_over_with_a_line(tmp_path, case) -> None:
    attrs, says = case()
    store = _study(tmp_path)
    _add_trial(store, TrialState.RUNNING, {"unit": "k", **{k: v for k, v in attrs.items() if k != "token"}})
    with pytest.warns(MtnasWarning) as record:
        assert store.claim("k")
    line = _one_line(record, "stale claim")
    assert line.startswith("study 's:evidence' trial 0: a stale claim of unit k (") and says in line
    assert line.endswith(") is taken over")
    taken = store._storage.get_trial_id_from_study_id_trial_number(store._study_id, 0)
    assert store._storage.get_trial(taken).state == TrialState.FAIL
    store.release("k")


def test_a_live_study_claim_is_held_and_named(tmp_path, recwarn) -> None:
    store = _study(tmp_path)
    _add_trial(store, TrialState.RUNNING, {"unit": "k", "host": "elsewhere", "pid": 4242, "beat": time.time()})
    assert not store.claim("k") and store.holder("k") == "elsewhere:4242" and not recwarn.list


# -- 3. edited evidence used without a word --------------------------------------------------------

def _entry(space, unit: Unit, value: float = 0.5) -> dict:
    metrics = {t: {m: value for m in space.task(t).metrics} for t in unit.tree.tasks}
    result = TreeResult(unit.tree, Cost(10, 10), metrics, {t: dict(m) for t, m in metrics.items()}, 0.1)
    return Trained(unit, result).to_entry()


def _set_val(value: Any, split: str = "val") -> Callable[[dict], None]:
    def edit(entry: dict) -> None:
        for metrics in entry["result"][split].values():
            for name in metrics:
                metrics[name] = value

    return edit


# (edit of the entry's content, whether its checksum is made again, what the line says)
EDITS = {
    "every val metric 1.0, checksum kept": (_set_val(1.0), False, "its checksum does not match its content"),
    "val accuracy 'x', checksum recomputed": (_set_val("x"), True, "is 'x', not a finite number"),
    "val accuracy 5.0, checksum recomputed": (_set_val(5.0), True, "is 5, outside the range of accuracy [0, 1]"),
    "test accuracy -1.0, checksum recomputed": (_set_val(-1.0, "test"), True,
                                                "is -1, outside the range of accuracy [0, 1]"),
}


def _store_damaged(kind: str, tmp_path: Path, key: str, content: dict, edit: Callable[[dict], None],
                   checksum: bool) -> tuple[Any, str]:
    """A store holding ``content`` at ``key``, edited (with the checksum of the content before the
    edit, or one made again); and where its line names it."""
    sealed = seal(copy.deepcopy({**content, "key": key} if kind == "local" else content))
    edit(sealed["content"])
    if checksum:
        sealed = seal(sealed["content"])
    if kind == "local":
        store = LocalStore(tmp_path / "evidence")
        path = store._path(key, ".json")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(sealed))
        return store, str(path)
    store = _study(tmp_path)
    _add_trial(store, TrialState.COMPLETE, {"unit": key, "host": HOST, "pid": os.getpid()}, {"entry": sealed})
    return store, "study 's:evidence' trial 0"


@pytest.mark.parametrize("kind", ["local", "study"])
@pytest.mark.parametrize("edit, checksum, says", EDITS.values(), ids=EDITS.keys())
def test_an_edited_or_unsound_unit_is_trained_again_with_a_line_naming_it(tmp_path, kind, edit, checksum,
                                                                           says) -> None:
    space, bundle = _small()
    unit = Unit(BranchingTree.all_shared(space.task_names, 4), 1, seed=0)
    key = Evidence(space, bundle).key(unit)
    store, where = _store_damaged(kind, tmp_path, key, _entry(space, unit), edit, checksum)
    evidence = Evidence(space, bundle, store=store)
    with pytest.warns(DamagedEntryWarning) as record:
        (found,) = evidence.obtain([unit])
    line = _one_line(record, "damaged unit")
    assert line.startswith(where) and says in line and line.endswith("it is made again")
    assert evidence.trained == 1 and found.result.cost != Cost(10, 10)  # trained here, not the stored one
    again = Evidence(space, bundle, store=_study(tmp_path) if kind == "study" else LocalStore(tmp_path / "evidence"))
    with pytest.warns(DamagedEntryWarning) if kind == "study" else _no_warning():
        (read,) = again.obtain([unit])  # the damaged trial is named again, and passed over: the new one is read
    assert again.trained == 0 and read.result == found.result


@contextlib.contextmanager
def _no_warning() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not caught, [str(w.message) for w in caught]


def test_a_study_entry_without_a_checksum_is_not_used(tmp_path) -> None:
    space, bundle = _small()
    unit = Unit(BranchingTree.all_shared(space.task_names, 4), 1, seed=0)
    store = _study(tmp_path)
    key = Evidence(space, bundle).key(unit)
    edited = _entry(space, unit)
    _set_val(1.0)(edited)
    _add_trial(store, TrialState.COMPLETE, {"unit": key, "host": HOST, "pid": os.getpid()}, {"entry": edited})
    with pytest.warns(DamagedEntryWarning, match=r"trial 0: .*not used \(it carries no checksum"):
        assert store.get(key) is None
    assert store.claim(key)  # and it blocks no claim


BASELINE_EDITS = {
    "accuracy 1.0, checksum kept": (lambda b: _set_all(b, 1.0), False, "checksum does not match"),
    "accuracy 5.0, checksum recomputed": (lambda b: _set_all(b, 5.0), True, "outside the range of accuracy [0, 1]"),
}


def _set_all(entry: dict, value: float) -> None:
    for result in [*entry["baselines"]["single_task"].values(), entry["baselines"]["all_shared"]]:
        for split in ("val", "test"):
            for metrics in result[split].values():
                for name in metrics:
                    metrics[name] = value


@pytest.mark.parametrize("kind", ["local", "study"])
@pytest.mark.parametrize("edit, checksum, says", BASELINE_EDITS.values(), ids=BASELINE_EDITS.keys())
def test_damaged_baselines_are_computed_once_under_a_claim_and_stored_again(tmp_path, monkeypatch, kind, edit,
                                                                            checksum, says) -> None:
    """Issue 31: a damaged baseline entry was recomputed without a claim and never rewritten."""
    space, bundle = _small()
    shared = Unit(BranchingTree.all_shared(space.task_names, 4), 1, seed=0)
    single = {t: TreeResult.from_dict(_entry(space, Unit(BranchingTree.all_shared((t,), 4), 1, 0), 0.25)["result"])
              for t in space.task_names}
    true = Baselines(single, TreeResult.from_dict(_entry(space, shared, 0.75)["result"]), 0, space.training_hash)
    computed = []
    monkeypatch.setattr(evidence_module, "compute_baselines", lambda *a, **k: computed.append(1) or true)
    key = Evidence(space, bundle)._baselines_key(0)
    store, where = _store_damaged(kind, tmp_path, key, {"baselines": true.to_dict()}, edit, checksum)
    with pytest.warns(DamagedEntryWarning) as record:
        found = Evidence(space, bundle, store=store).baselines(0)
    line = _one_line(record, "damaged unit")
    assert line.startswith(where) and says in line
    assert found == true and computed == [1]
    again = _study(tmp_path) if kind == "study" else LocalStore(tmp_path / "evidence")
    with pytest.warns(DamagedEntryWarning) if kind == "study" else _no_warning():
        assert Evidence(space, bundle, store=again).baselines(0) == true
    assert computed == [1]  # stored: no other process computes them again


def _weights() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return {"w": torch.arange(4.0)}, {"w": torch.arange(4.0) + 1}


SWAPS = {
    "another unit's weights": ("other", "its metadata says unit 'bbbbbbbbbbbb"),
    "another run's exported weights": ("exported", "no unit in its metadata"),
}


@pytest.mark.parametrize("kind", ["local", "study"])
@pytest.mark.parametrize("swap, says", SWAPS.values(), ids=SWAPS.keys())
def test_weights_of_another_unit_or_run_are_not_used_and_named(tmp_path, kind, swap, says) -> None:
    mine, theirs = _weights()
    a, b = "a" * 64, "b" * 64
    store = LocalStore(tmp_path) if kind == "local" else _study(tmp_path)
    store.put_weights(a, "tree", mine)
    store.put_weights(b, "tree", theirs)
    assert torch.equal(store.get_weights(a, "tree")["w"], mine["w"])
    if kind == "local":
        where = str(store._path(a, ".safetensors"))
        if swap == "other":
            store._path(a, ".safetensors").write_bytes(store._path(b, ".safetensors").read_bytes())
        else:
            save_weights(store._path(a, ".safetensors"), theirs, tree_key="tree")
    else:
        where = f"study 's:evidence': weights of unit {a[:12]}"
        attrs = store._storage.get_study_system_attrs(store._study_id)
        if swap == "other":
            store._storage.set_study_system_attr(store._study_id, f"weights:{a}", attrs[f"weights:{b}"])
        else:
            save_weights(tmp_path / "exported.safetensors", theirs, tree_key="tree")
            artifact = optuna.artifacts.upload_artifact(
                artifact_store=optuna.artifacts.FileSystemArtifactStore(str(tmp_path / "artifacts")),
                file_path=str(tmp_path / "exported.safetensors"), study_or_trial=store._study)
            store._storage.set_study_system_attr(store._study_id, f"weights:{a}", artifact)
    with pytest.warns(DamagedEntryWarning) as record:
        assert store.get_weights(a, "tree") is None
    line = _one_line(record, "weights")
    assert line.startswith(where) and says in line and line.endswith("not used, they are trained again")
    store.put_weights(a, "tree", mine)  # trained again: written anew
    assert torch.equal(store.get_weights(a, "tree")["w"], mine["w"])


RANGES = {
    "accuracy 5.0": ("segmentation", "pixel_accuracy", 5.0, "outside the range of pixel_accuracy [0, 1]"),
    "miou -1.0": ("segmentation", "miou", -1.0, "outside the range of miou [0, 1]"),
    "f1 1.5": ("edges", "f1", 1.5, "outside the range of f1 [0, 1]"),
    "an error below 0": ("depth", "abs_err", -0.1, "outside the range of abs_err [0, inf]"),
    "an angle of 200 degrees": ("normals", "angle_mean", 200.0, "outside the range of angle_mean [0, 180]"),
    "accuracy 1.0": ("segmentation", "pixel_accuracy", 1.0, None),
    "an error of 1e6": ("depth", "abs_err", 1e6, None),
    "an angle of 180 degrees": ("normals", "angle_mean", 180.0, None),
}


@pytest.mark.parametrize("task, metric, value, says", RANGES.values(), ids=RANGES.keys())
def test_a_stored_metric_outside_its_range_is_damage(task, metric, value, says) -> None:
    space = load_space("synth_scenes")
    metrics = {t: {m: 0.5 for m in space.task(t).metrics} for t in space.task_names}
    data = {"tree": BranchingTree.all_shared(space.task_names, space.num_layers).to_dict(),
            "cost": {"params": 1, "flops": 1}, "val": metrics, "test": json.loads(json.dumps(metrics)), "seconds": 1.0}
    data["test"][task][metric] = value
    if says is None:
        assert checked_result(data, space).test[task][metric] == value
    else:
        with pytest.raises(ValueError, match=r"^test\." + task + r"\." + metric + r" is .*" + says.replace("[", r"\[")):
            checked_result(data, space)


# -- minor: the evidence folder itself ------------------------------------------------------------

def _full(monkeypatch, store: LocalStore) -> str:
    import mtnas.train._store as store_module

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "write_checked", full)
    return f"{store.root}: the evidence folder cannot be written (No space left on device)"


def _read_only(monkeypatch, store: LocalStore) -> str:
    def read_only(*a: object, **k: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(LocalStore, "_create", staticmethod(read_only))
    return f"{store.root}: the evidence folder cannot be written (Read-only file system)"


def _symlinked(monkeypatch, store: LocalStore) -> str:
    elsewhere = store.root.parent / "elsewhere"
    elsewhere.mkdir()
    store.root.mkdir()
    return f"{store.root / 'xx'} is a symbolic link: not used"


FOLDER_FAULTS = {"full": _full, "read-only": _read_only, "a subfolder replaced by a symbolic link": _symlinked}


@pytest.mark.parametrize("fault", FOLDER_FAULTS.values(), ids=FOLDER_FAULTS.keys())
def test_a_folder_that_cannot_be_used_is_one_line_and_the_search_goes_on_without_storing(tmp_path, monkeypatch,
                                                                                          fault) -> None:
    space, bundle = _small()
    unit = Unit(BranchingTree.all_shared(space.task_names, 4), 1, seed=0)
    store = LocalStore(tmp_path / "evidence")
    says = fault(monkeypatch, store)
    evidence = Evidence(space, bundle, store=store)
    key = evidence.key(unit)
    if "symbolic" in says:
        os.symlink(tmp_path / "elsewhere", store.root / key[:2])
        says = says.replace("xx", key[:2])
    with pytest.warns(MtnasWarning) as record:
        (found,) = evidence.obtain([unit])
    assert _one_line(record, str(store.root)).startswith(says)
    assert evidence.trained == 1 and found.unit == unit
    assert not list(store.root.rglob("*.lock")) and not list(store.root.rglob("*.json"))  # released, nothing kept
    assert not (tmp_path / "elsewhere").exists() or not list((tmp_path / "elsewhere").iterdir())  # not written through


# -- issue 31 ---------------------------------------------------------------------------------------

def test_a_waiting_process_reads_the_study_once_per_poll_not_once_per_unit(tmp_path) -> None:
    space, bundle = _small()
    units = [Unit(BranchingTree.all_shared(space.task_names, 4), 1, seed=s) for s in range(6)]
    other = _study(tmp_path)  # another worker, holding every unit
    keys = [Evidence(space, bundle).key(u) for u in units]
    assert all(other.claim(k) for k in keys)
    store = _study(tmp_path)
    reads, real = [], store._storage.get_all_trials
    store._storage.get_all_trials = lambda *a, **k: reads.append(1) or real(*a, **k)
    evidence = Evidence(space, bundle, store=store, poll=0.05)
    polls, wait = [], evidence._wait
    evidence._wait = lambda *a, **k: polls.append(1) or wait(*a, **k)

    def finish() -> None:
        time.sleep(1.0)
        for k, u in zip(keys, units):
            other.put(k, _entry(space, u))

    threading.Thread(target=finish).start()
    found = evidence.obtain(units)
    assert evidence.trained == 0 and [f.unit for f in found] == units
    assert len(polls) >= 10 and len(reads) <= len(polls) + 3  # was 2 x 6 units per poll


def _break_stale_locks(root: str, keys: list[str], barrier, queue) -> None:
    judge = LocalStore._stale

    def slowly(self: LocalStore, *args: object) -> str | None:  # the window between judging and breaking, widened
        why = judge(self, *args)
        time.sleep(0.2)
        return why

    LocalStore._stale = slowly
    store = LocalStore(root)
    won = []
    for key in keys:
        barrier.wait()
        won.append(store.claim(key))
    queue.put(won)
    barrier.wait()  # hold every lock won until all have tried


def test_of_processes_breaking_one_stale_lock_exactly_one_claims_the_unit(tmp_path) -> None:
    """Issue 31: ``claim`` checked, then broke a stale lock: two processes could both train one unit
    (with the window widened as here, every process did)."""
    store, dead = LocalStore(tmp_path), _dead_pid()
    keys = [f"{i:02d}" + "0" * 62 for i in range(6)]
    for key in keys:
        lock = store._path(key, ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text(json.dumps(_claim(pid=dead, start=None)))
    ctx = multiprocessing.get_context("spawn")
    barrier, queue, n = ctx.Barrier(3), ctx.Queue(), 3
    procs = [ctx.Process(target=_break_stale_locks, args=(str(tmp_path), keys, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [sum(r[i] for r in results) for i in range(len(keys))] == [1] * len(keys)
