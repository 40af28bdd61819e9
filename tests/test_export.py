"""``mtnas export``: picking a trial, a self-contained arch.json, inherited weights, ONNX and torch.export."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from mtnas.cli import main
from mtnas.export import export_model, export_trial
from mtnas.model import BranchedNet, arch_space, load_into, load_weights, save_weights
from mtnas.study import (
    PICKS,
    choose_trial,
    front_points,
    front_trees,
    knee,
    pareto,
    run_search,
    searched_front,
)
from mtnas.tree import Architecture
from tests.conftest import write_tiny_space


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    path = write_tiny_space(tmp / "tiny.yaml")
    data = yaml.safe_load(path.read_text())
    data["search"].update({"epochs": 3, "warmup_epochs": 1, "proxy_epochs": 1})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    run, _ = run_search(str(path), name="r", trials=4, runs_dir=tmp, progress=False)
    return run.root


def test_knee_is_the_point_farthest_above_the_cheap_to_best_line() -> None:
    # (quality, cost): a clear elbow at index 1 — most of the quality for a third of the cost
    front = [(-20.0, 1.0), (-2.0, 2.0), (-1.5, 3.0), (-1.0, 6.0)]
    assert knee(front) == 1
    assert knee([(-5.0, 1.0), (-1.0, 4.0)]) == 1  # two points: the best quality
    assert knee([(-5.0, 1.0), (-4.0, 2.0), (-3.0, 3.0)]) == 2  # collinear: no elbow, quality wins the tie


@pytest.mark.parametrize("pick", ["trade-off", "quality", "cheapest", "knee"])
def test_picks_choose_among_the_searched_trees(run_dir: Path, tmp_path: Path, pick: str) -> None:
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{run_dir / 'study.db'}")
    searched = searched_front(study)
    assert searched and not any(t.user_attrs.get("fixed_tree") for t in searched)
    expected = searched[PICKS.get(pick)(front_points(study, searched))]
    assert choose_trial(study, pick=pick).number == expected.number
    report = export_trial(run_dir, tmp_path, pick=pick)
    assert report.trial == expected.number
    done = [t for t in study.trials if t.values and not t.user_attrs.get("fixed_tree")]
    if pick == "quality":
        assert expected.user_attrs["delta_m"] == max(t.user_attrs["delta_m"] for t in done)
    if pick == "cheapest":
        assert expected.user_attrs["flops"] == min(t.user_attrs["flops"] for t in done)


def test_the_references_stay_on_the_front_marked_and_reachable_by_trial(run_dir: Path, tmp_path: Path) -> None:
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{run_dir / 'study.db'}")
    references = {t.user_attrs["fixed_tree"]: t.number for t in study.trials if t.user_attrs.get("fixed_tree")}
    assert set(references) == {"all-shared", "independent"}
    on_front = [t.number for t in pareto(study)]
    marked = {f["trial"]: f["reference"] for f in json.loads((run_dir / "pareto.json").read_text())}
    assert marked == {n: next((k for k, v in references.items() if v == n), None) for n in on_front}
    whole = front_trees(study, references=True)
    assert {f.trial: f.reference for f in whole} == marked
    assert all(f.reference is None for f in front_trees(study))  # the API's front: the searched trees
    for name, number in references.items():
        assert export_trial(run_dir, tmp_path / name, trial=number).tree == study.trials[number].user_attrs["tree"]


def test_exported_arch_rebuilds_with_no_run_folder(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    report = export_trial(copy, tmp_path / "out", trial=1)
    shutil.rmtree(copy)  # nothing of the run is needed any more
    monkeypatch.chdir(tmp_path)
    arch = Architecture.load(tmp_path / "out" / "arch.json")
    assert arch.provenance["trial"] == 1 and report.trial == 1
    model = BranchedNet.from_space(arch.tree, arch_space(arch))
    assert sum(p.numel() for p in model.parameters()) == arch.cost["params"]
    assert (tmp_path / "out" / "tree.png").read_bytes()[:4] == b"\x89PNG"


def test_with_weights_ships_the_inherited_supernet_weights(run_dir: Path, tmp_path: Path) -> None:
    trial = 2  # the first differentiable trial
    export_trial(run_dir, tmp_path, trial=trial, with_weights=True)
    arch = Architecture.load(tmp_path / "arch.json")
    state = load_weights(tmp_path / "weights.safetensors", tree_key=arch.tree.key)
    model = BranchedNet.from_space(arch.tree, arch_space(arch))
    load_into(model, state, tmp_path / "weights.safetensors")  # BranchedNet takes the keys as they are
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert set(state) == set(model.state_dict())


def test_bad_export_requests_are_one_line(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = [
        (["--trial", "0", "--with-weights"], "has no inherited weights"),  # the enqueued all-shared tree
        (["--trial", "99"], "trial 99 is not a completed trial"),
        (["--pick", "kne"], "did you mean 'knee'"),
        (["--format", "onnx"], "give its arch.json"),
    ]
    for extra, message in cases:
        assert main(["export", str(run_dir), "-o", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert main(["export", str(tmp_path / "nothing"), "-o", str(tmp_path)]) == 2
    assert "expected a run folder" in capsys.readouterr().err


def test_a_failed_export_leaves_the_folder_and_a_new_one_replaces_every_file(run_dir: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    export_trial(run_dir, out, trial=2, with_weights=True)
    (out / "notes.txt").write_text("the user's own file")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["export", str(run_dir), "-o", str(out), "--trial", "0", "--with-weights"]) == 2  # no weights
    assert "has no inherited weights" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # as it was
    export_trial(run_dir, out, trial=1)  # without weights: the earlier weights go
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "notes.txt", "tree.png"]
    assert Architecture.load(out / "arch.json").provenance["trial"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


@pytest.fixture()
def trained(run_dir: Path, tmp_path: Path) -> Path:
    """An exported arch.json with 'retrained' weights where mtnas retrain puts them."""
    export_trial(run_dir, tmp_path, trial=2)
    arch = Architecture.load(tmp_path / "arch.json")
    torch.manual_seed(0)
    model = BranchedNet.from_space(arch.tree, arch_space(arch))
    save_weights(tmp_path / "retrain" / "weights.safetensors", model.state_dict(), tree_key=arch.tree.key)
    return tmp_path / "arch.json"


def _reference(arch_path: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    arch = Architecture.load(arch_path)
    model = BranchedNet.from_space(arch.tree, arch_space(arch))
    load_into(model, load_weights(arch_path.parent / "retrain" / "weights.safetensors"), "w")
    with torch.no_grad():
        return model.eval()(x)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        reason = "the onnx extra is not installed: pip install 'mtnas[onnx]'"
        if os.environ.get("CI") == "true":  # CI installs the test extra, which includes it
            pytest.fail(reason)
        pytest.skip(reason)
    return onnxruntime


def test_onnx_gives_the_pytorch_outputs_for_every_task(trained: Path, tmp_path: Path) -> None:
    ort = _onnxruntime()
    report = export_model(trained, tmp_path / "deploy", fmt="onnx")
    signature = json.loads((tmp_path / "deploy" / "io.json").read_text())
    arch = Architecture.load(trained)
    x = torch.randn(5, *arch_space(arch).input_shape)  # another batch size than the export's example
    expected = _reference(trained, x)
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["arch.json", "io.json", "model.onnx"]  # one file
    session = ort.InferenceSession(str(report.files["onnx"]), providers=["CPUExecutionProvider"])
    outputs = session.run(signature["outputs"], {"input": x.numpy()})
    assert signature["outputs"] == list(arch.tree.tasks)
    for task, got in zip(signature["outputs"], outputs):
        torch.testing.assert_close(torch.from_numpy(got), expected[task], atol=1e-4, rtol=1e-4)


def test_torch_export_gives_the_pytorch_outputs(trained: Path, tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "model.onnx").write_bytes(b"an earlier export")  # replaced by this one: removed
    report = export_model(trained, tmp_path / "deploy", fmt="torch-export")
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["arch.json", "io.json", "model.pt2"]
    program = torch.export.load(str(report.files["torch-export"]))
    arch = Architecture.load(trained)
    x = torch.randn(3, *arch_space(arch).input_shape)
    expected = _reference(trained, x)
    for task, got in zip(arch.tree.tasks, program.module()(x)):
        torch.testing.assert_close(got, expected[task])


def test_deployment_export_refuses_weights_of_another_tree(trained: Path, tmp_path: Path, capsys) -> None:
    other = Architecture.load(trained).tree
    wrong = tmp_path / "wrong.safetensors"
    save_weights(wrong, {"x": torch.zeros(1)}, tree_key="0" * 64)
    assert main(["export", str(trained), "-o", str(tmp_path / "d"), "--format", "onnx", "--weights", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert "weights are for tree 000000" in err and other.key in err
    assert main(["export", str(trained), "-o", str(tmp_path / "d"), "--format", "tflite"]) == 2
    assert "unknown format 'tflite'" in capsys.readouterr().err


def test_plot_draws_a_run_trial_or_an_arch_json(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mtnas.report import tree_source

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["plot", str(copy)]) == 0
    assert capsys.readouterr().out.strip() == str(copy / "tree.png")
    assert (copy / "tree.png").read_bytes()[:4] == b"\x89PNG"
    tree, title, _ = tree_source(copy, trial=1)
    assert tree.describe() == "0-3: each" and title.startswith("run trial 1 — ") and "delta-m" in title
    assert main(["plot", str(copy), "--trial", "1", "-o", str(tmp_path / "t.svg")]) == 0
    assert (tmp_path / "t.svg").read_bytes().startswith(b"<?xml")
    arch = copy / "trials" / "0001" / "arch.json"
    assert main(["plot", str(arch), "-o", str(tmp_path / "a.pdf")]) == 0
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    for argv, message in [([str(arch), "--trial", "2"], "an arch.json holds one tree"),
                          ([str(copy), "-o", str(tmp_path / "t.gif")], "must end in .png, .svg or .pdf"),
                          ([str(copy), "--trial", "42"], "trial 42 is not a completed trial")]:
        capsys.readouterr()
        assert main(["plot", *argv]) == 2
        assert message in capsys.readouterr().err
    assert main(["show", str(arch)]) == 0
    assert capsys.readouterr().out.strip() == Architecture.load(arch).tree.render_text().strip()
