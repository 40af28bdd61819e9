"""The command line: exit codes, one-line errors, JSON output, and what train/baselines report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtnas.cli import COMMANDS, main
from mtnas.space import load_resolved
from mtnas.tree import Architecture, BranchingTree


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtnas", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("name", COMMANDS.names())
def test_every_command_has_help(name: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert COMMANDS.get(name).help in capsys.readouterr().out


def test_spaces_lists_builtins(capsys: pytest.CaptureFixture) -> None:
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert "digit_gratings" in out and "multi_digits" in out and "synth_scenes" in out


def test_user_error_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {name: digit_gratings}\nbackbone: {name: conv, layers: [{channels: 8}]}\ntasks: [digit]\ntrainig: {}\n")
    proc = run_cli("train", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "unknown key 'trainig' (did you mean 'training'?)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_cli("train", "no_such_space", "--debug")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "no search space 'no_such_space'" in proc.stderr


def test_unknown_dataset_and_tree_mismatch(tmp_path: Path, tiny_space: Path) -> None:
    text = tiny_space.read_text().replace("name: digit_gratings", "name: digit_gratting")
    (tmp_path / "typo.yaml").write_text(text)
    proc = run_cli("train", str(tmp_path / "typo.yaml"))
    assert proc.returncode == 2 and "unknown dataset 'digit_gratting' (did you mean 'digit_gratings'?)" in proc.stderr
    arch = Architecture(BranchingTree.all_shared(("digit", "colour"), 4), {})
    arch.save(tmp_path / "arch.json")
    proc = run_cli("train", str(tiny_space), "--tree", str(tmp_path / "arch.json"))
    assert proc.returncode == 2 and "missing ['parity'" in proc.stderr and "unknown ['colour']" in proc.stderr


def test_train_reports_metrics_cost_and_delta_m(tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space, _ = load_resolved(tiny_space)
    split = BranchingTree.from_split_points(space.task_names, space.num_layers,
                                            {1: [["digit", "parity", "ge5"], ["orientation", "frequency", "diagonal"]]})
    Architecture(split, space.to_dict()).save(tmp_path / "split.json")
    assert main(["train", str(tiny_space), "--tree", str(tmp_path / "split.json"), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reused"] is None and BranchingTree.from_dict(report["tree"]) == split
    assert set(report["test"]) == set(space.task_names)
    assert all(0.0 <= m["accuracy"] <= 1.0 for m in report["test"].values())
    assert report["cost"]["params"] > 0 and report["cost"]["flops"] > 0
    by_hand = sum(
        (report["test"][t]["accuracy"] - report["single_task"][t]["accuracy"]) / report["single_task"][t]["accuracy"]
        for t in space.task_names
    ) * 100 / len(space.task_names)
    assert report["delta_m"]["test"] == pytest.approx(by_hand)


def test_baselines_are_cached(tiny_space: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["baselines", str(tiny_space), "--json", "--quiet"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["baselines", str(tiny_space), "--json", "--quiet"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first == second  # same numbers, including the recorded training seconds: from the cache
    assert set(first["single_task"]) == {"digit", "parity", "ge5", "orientation", "frequency", "diagonal"}


def test_train_compares_at_its_own_budget_and_reuses_the_reference_trees(tiny_space: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(tiny_space), "--tree", "independent", "--epochs", "2", "--json", "--quiet"]) == 0
    independent = json.loads(capsys.readouterr().out)
    assert independent["delta_m"] == {"val": 0.0, "test": 0.0}  # the single-task networks themselves
    assert independent["reused"] == "single-task networks" and independent["baselines"]["epochs"] == 2
    assert main(["baselines", str(tiny_space), "--epochs", "2", "--json", "--quiet"]) == 0
    baselines = json.loads(capsys.readouterr().out)  # the same budget: from the cache, the same numbers
    assert {t: r["test"][t] for t, r in baselines["single_task"].items()} == independent["single_task"]
    assert main(["train", str(tiny_space), "--tree", "all-shared", "--epochs", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "2 epochs, the all-shared tree of the baselines" in text
    assert "against single-task networks trained for 2 epochs (seed 0)" in text
    delta = baselines["delta_m_all_shared"]["test"]
    assert f"delta-m: {delta:+.2f}% test" in text
    assert main(["train", str(tiny_space), "--tree", "all-shared", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["baselines"]["epochs"] == 1  # the space's own budget


def test_a_closed_pipe_ends_quietly_with_status_0() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written (as `mtnas spaces | head -0`)
    try:
        proc = subprocess.run([sys.executable, "-m", "mtnas", "spaces"], stdout=write, stderr=subprocess.PIPE,
                              text=True)
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == ""


def test_spaces_prints_a_builtin_spaces_yaml_to_copy(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    from mtnas.space import load_space

    assert main(["spaces", "digit_gratings", "--yaml"]) == 0
    copy = tmp_path / "digit_gratings.yaml"
    copy.write_text(capsys.readouterr().out)
    assert load_space(copy).to_dict() == load_space("digit_gratings").to_dict()
    assert main(["spaces", "multi_digits", "--json"]) == 0
    assert [row["space"] for row in json.loads(capsys.readouterr().out)] == ["multi_digits"]


@pytest.mark.parametrize("argv, expected", [
    (["spaces", "--yaml"], "--yaml prints one space: give its name"),
    (["spaces", "digit_gratngs", "--yaml"], "no built-in search space 'digit_gratngs' (did you mean 'digit_gratings'?)"),
    (["spaces", "nope"], "no built-in search space 'nope'"),
])
def test_spaces_of_an_unknown_name_is_one_line(argv: list[str], expected: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_retrain_says_how_many_epochs_it_trains_and_takes_epochs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An arch.json of a search run with --epochs 2 records 2 epochs: a retrain says so instead of
    training them silently as "the full budget"."""
    from tests.test_retrain import write_arch

    arch = write_arch(tmp_path, epochs=1)
    assert main(["retrain", str(arch), "--quiet", "--json"]) == 0
    captured = capsys.readouterr()
    assert (f"mtnas: note: training for 1 epoch, the training.epochs of {arch} (its search's budget); --epochs N "
            "trains for another") in captured.err
    assert json.loads(captured.out)["epochs"] == 1
    assert main(["retrain", str(arch), "--epochs", "2", "-o", str(tmp_path / "two"), "--quiet", "--json"]) == 0
    captured = capsys.readouterr()
    assert "note:" not in captured.err and json.loads(captured.out)["epochs"] == 2
