"""``--log-to``: a search and a retrain in TensorBoard and MLflow, read back by each tracker's own reader.

One tiny search (3 trials, proxy trainings of 2 epochs) and one retrain (2 epochs) log to every
registered tracker; each tracker's files are read with its own reader (TensorBoard's
``EventAccumulator``, MLflow's ``MlflowClient``) and compared with what the run's own files say:
the study's trials, ``trials/NNNN/metrics.json``, ``candidates.json``, ``baselines.json``,
``retrain/metrics.jsonl`` and ``final.json``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from mtnas.cli import main
from mtnas.core import MtnasError
from mtnas.study import SearchRun, load_study, worker_command
from mtnas.train import TRACKERS, check_trackers, mlflow_uri
from mtnas.tree import BranchingTree
from tests.conftest import write_tiny_space

#: run name -> scalar name -> step -> value
Curves = dict[str, dict[str, dict[int, float]]]


def read_tensorboard(folder: Path) -> tuple[Curves, dict[str, str]]:
    """Every run under ``folder`` (a folder of event files) by its path, and each run's tags text."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: Curves = {}
    tags: dict[str, str] = {}
    for run in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        name = run.relative_to(folder).as_posix()
        curves[name] = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
        if "tags/text_summary" in acc.Tags()["tensors"]:
            tags[name] = acc.Tensors("tags/text_summary")[0].tensor_proto.string_val[0].decode()
    return curves, tags


def read_mlflow(folder: Path, experiment: str) -> tuple[Curves, dict[str, Any]]:
    """Every run of ``experiment`` in the store of ``folder`` by its name, and each run (tags, params)."""
    from mlflow.tracking import MlflowClient

    with warnings.catch_warnings():  # SQLAlchemy's deprecation notes about MLflow's own mappers
        warnings.simplefilter("ignore")
        client = MlflowClient(tracking_uri=mlflow_uri(folder))
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {folder}"
    curves: Curves = {}
    runs: dict[str, Any] = {}
    for run in client.search_runs([found.experiment_id], max_results=1000):
        name = run.info.run_name
        assert name not in runs, f"two runs named {name!r}"
        runs[name] = run
        curves[name] = {key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
                        for key in run.data.metrics}
    return curves, runs


READERS = {
    "tensorboard": lambda logs, experiment: read_tensorboard(logs / "tensorboard"),
    "mlflow": lambda logs, experiment: read_mlflow(logs / "mlflow", experiment),
}
#: TensorBoard keeps float32 scalars; MLflow the float64 written
TOLERANCE = {"tensorboard": 1e-6, "mlflow": 0.0}


def test_every_tracker_has_a_reader_here() -> None:
    assert sorted(READERS) == TRACKERS.names()


def _installed() -> None:
    """Skip when a tracker's package is missing here (the test extra installs them: under CI the
    test fails instead)."""
    try:
        check_trackers(TRACKERS.names())
    except MtnasError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A search, an export of its searched trial and a retrain of it, logged to every tracker."""
    _installed()
    tmp = tmp_path_factory.mktemp("trackers")
    space = write_tiny_space(tmp / "tiny.yaml")
    data = yaml.safe_load(space.read_text())
    data["search"].update({"epochs": 3, "warmup_epochs": 1, "proxy_epochs": 2})
    space.write_text(yaml.safe_dump(data, sort_keys=False))
    everything = ",".join(TRACKERS.names())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTNAS_CACHE_DIR", str(tmp / "cache"))
        assert main(["search", str(space), "--name", "r", "--trials", "3", "--runs-dir", str(tmp), "--quiet",
                     "--log-to", everything]) == 0
        assert main(["export", str(tmp / "r"), "--trial", "2", "-o", str(tmp / "out")]) == 0
        assert main(["retrain", str(tmp / "out" / "arch.json"), "--epochs", "2", "--quiet",
                     *[a for name in TRACKERS.names() for a in ("--log-to", name)]]) == 0
    return {"run": tmp / "r", "retrain": tmp / "out" / "retrain"}


def _close(tracker: str) -> Any:
    return lambda value: pytest.approx(value, rel=TOLERANCE[tracker], abs=0.0)


@pytest.mark.parametrize("tracker", sorted(READERS))
def test_a_search_logs_its_trials_trainings_and_candidates(tracker: str, logged: dict[str, Path]) -> None:
    run_folder = logged["run"]
    assert sorted(p.name for p in (run_folder / "logs").iterdir()) == TRACKERS.names()
    study = load_study(SearchRun(run_folder))
    curves, extra = READERS[tracker](run_folder / "logs", "r")
    close = _close(tracker)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1, 2]

    # the trials' objectives, as the study holds them
    for t in trials:
        if tracker == "tensorboard":  # the run `trials`, step = trial number
            assert curves["trials"]["trial/delta_m"][t.number] == close(t.values[0])
            assert curves["trials"]["trial/flops"][t.number] == close(t.values[1])
        else:  # Optuna's MLflowCallback: a run per trial, named by its number
            assert curves[str(t.number)]["delta_m"] == {0: t.values[0]}
            assert curves[str(t.number)]["flops"] == {0: t.values[1]}
            assert extra[str(t.number)].data.params == {k: str(v) for k, v in t.params.items()}
            assert extra[str(t.number)].data.tags["state"] == "COMPLETE"

    # the all-shared tree is a unit of evidence trained once per study, with the baselines (under
    # baselines/), and read by trial 0: per-epoch curves whose last validation metrics are the
    # trial's (metrics.json)
    space = yaml.safe_load((run_folder / "space.yaml").read_text())
    tasks = [t["name"] for t in space["tasks"]]
    assert f"trial-0000/tree-{trials[0].user_attrs['tree_key']}" not in curves  # not trained again
    training = curves[f"baselines/tree-{trials[0].user_attrs['tree_key']}"]
    val = json.loads((run_folder / "trials" / "0000" / "metrics.json").read_text())["val"]
    assert set(training) == ({f"loss/{t}" for t in tasks} | {"loss/total", "lr"}
                             | {f"val/{t}/{m}" for t in tasks for m in val[t]})
    assert all(set(series) == {1, 2} for series in training.values())  # proxy_epochs: 2
    for t in tasks:
        for m, value in val[t].items():
            assert training[f"val/{t}/{m}"][2] == close(value)
    for epoch in (1, 2):
        assert training["loss/total"][epoch] == pytest.approx(sum(training[f"loss/{t}"][epoch] for t in tasks), rel=1e-5)
    # the trained search of trial 2: its trainings and what it compared (candidates.json), best first
    searched = [name for name in curves if name.startswith("trial-0002/tree-")]
    assert len(searched) >= 2
    candidates = json.loads((run_folder / "trials" / "0002" / "candidates.json").read_text())
    logged_candidates = curves["trial-0002/candidates"]
    for key in ("score", "delta_m", "cost"):
        assert logged_candidates[f"candidate/{key}"] == {i: close(r[key]) for i, r in enumerate(candidates["trees"])}

    # the single-task baselines, under baselines/: their last validation metrics are baselines.json's
    baselines = json.loads((run_folder / "baselines.json").read_text())["single_task"]
    for t in tasks:
        key = BranchingTree.all_shared((t,), len(space["backbone"]["layers"])).key
        for m, value in baselines[t]["val"][t].items():
            assert curves[f"baselines/tree-{key}"][f"val/{t}/{m}"][2] == close(value)

    if tracker == "mlflow":  # a trial's trainings are child runs of the trial's run
        parent = extra["2"].info.run_id
        assert all(extra[name].data.tags.get("mlflow.parentRunId") == parent
                   for name in extra if name.startswith("trial-0002/"))
        assert extra["trial-0002/candidates"].data.tags["chosen"] == candidates["chosen"]
        assert all(r.info.status == "FINISHED" for r in extra.values())
    else:
        assert f"**chosen**: {candidates['chosen']}" in extra["trial-0002/candidates"]


@pytest.mark.parametrize("tracker", sorted(READERS))
def test_a_retrain_logs_the_lines_of_its_metrics_file(tracker: str, logged: dict[str, Path]) -> None:
    out = logged["retrain"]
    curves, _ = READERS[tracker](out / "logs", "retrain")
    close = _close(tracker)
    retrain = curves["retrain"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    for line in lines:
        epoch = line["epoch"]
        for task, loss in line["train_loss"].items():
            assert retrain[f"loss/{task}"][epoch] == close(loss)
            for m, value in line["val"][task].items():
                assert retrain[f"val/{task}/{m}"][epoch] == close(value)
        assert retrain["loss/total"][epoch] == close(line["train_loss_total"])
        assert retrain["lr"][epoch] == close(line["lr"])
        assert retrain["samples_per_s"][epoch] == close(line["samples_per_s"])
    final = json.loads((out / "final.json").read_text())
    for task, metrics in final["test"].items():
        for m, value in metrics.items():
            assert retrain[f"test/{task}/{m}"] == {2: close(value)}
    assert retrain["delta_m/test"] == {2: close(final["delta_m"]["test"])}


@pytest.mark.parametrize("tracker", sorted(READERS))
@pytest.mark.parametrize("command", ["search", "worker", "retrain"])
def test_a_tracker_not_installed_is_one_line_before_any_work(tracker: str, command: str, tmp_path: Path,
                                                             tiny_space: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, tracker, None)  # `import tensorboard` / `import mlflow` fails
    args = {
        "search": ["search", str(tiny_space), "--name", "x", "--runs-dir", str(tmp_path / "runs")],
        "worker": ["worker", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--study", "x"],
        "retrain": ["retrain", str(tmp_path / "arch.json")],
    }[command]
    assert main([*args, "--log-to", tracker]) == 2
    err = capsys.readouterr().err
    assert err == (f"mtnas: error: --log-to {tracker} needs the {tracker!r} package: "
                   f"pip install 'mtnas[{tracker}]'\n")
    assert list(tmp_path.iterdir()) == [tiny_space]  # no run folder, no database, nothing


def test_log_to_takes_names_comma_separated_or_repeated(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mtnas.cli import build_parser

    args = build_parser("retrain").parse_args(["retrain", "a.json", "--log-to", "tensorboard,mlflow",
                                               "--log-to", "tensorboard"])
    assert args.log_to == ["tensorboard", "mlflow", "tensorboard"]  # the library drops the repeat
    assert main(["retrain", "a.json", "--log-to", "tensorbord"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown tracker 'tensorbord'" in err and "tensorboard" in err
    # local worker processes of a search log to the same trackers
    assert worker_command("journal:///x/journal.log", "x", log_to=("tensorboard", "mlflow"))[-2:] == [
        "--log-to", "tensorboard,mlflow"]


def test_a_run_opened_again_goes_on_and_a_repeat_in_one_scope_is_numbered(tmp_path: Path) -> None:
    _installed()
    from mtnas.train import Tracking

    first = Tracking(TRACKERS.names(), tmp_path / "logs", "x")
    first.prepare()
    with first.open("retrain", {"tree": "0-3: all"}) as log:
        log.log({"loss/total": 2.0}, 1)
    with first.open("retrain") as log:  # the same name again in this scope: another training
        log.log({"loss/total": 5.0}, 1)
    with Tracking(TRACKERS.names(), tmp_path / "logs", "x").open("retrain") as log:  # a resumed process
        log.log({"loss/total": 1.0}, 2)
    for tracker in sorted(READERS):
        curves, _ = READERS[tracker](tmp_path / "logs", "x")
        assert curves == {"retrain": {"loss/total": {1: 2.0, 2: 1.0}}, "retrain-2": {"loss/total": {1: 5.0}}}
