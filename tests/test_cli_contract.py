"""The command line's contract: pipeline order, choices from the registries, JSON output, and
read-only commands that never import torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtnas.cli import COMMANDS, main
from mtnas.export import DEPLOY_FORMATS
from mtnas.study import OBJECTIVES, PICKS, SAMPLERS, STRATEGIES, run_search
from mtnas.train import DATA_PLACEMENTS, INITS, PRECISIONS
from mtnas.tree import NAMED_TREES

PIPELINE = ["spaces", "search", "worker", "trials", "show", "plot", "report", "compare", "export", "retrain", "train",
            "baselines", "demo"]


def test_help_lists_the_commands_in_pipeline_order(capsys: pytest.CaptureFixture) -> None:
    assert COMMANDS.in_order() == PIPELINE
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    positions = [out.index(f"    {name} ") if f"    {name} " in out else out.index(f"    {name}\n") for name in PIPELINE]
    assert positions == sorted(positions)


ENUMERATED = [
    ("search", "--strategy", STRATEGIES.names()),
    ("search", "--sampler", SAMPLERS.names()),
    ("search", "--objectives", OBJECTIVES.names()),
    ("plot", "--pick", PICKS.names()),
    ("export", "--pick", PICKS.names()),
    ("export", "--format", DEPLOY_FORMATS.names()),
    ("retrain", "--precision", list(PRECISIONS)),
    ("retrain", "--data", list(DATA_PLACEMENTS)),
    ("retrain", "--init", list(INITS)),
    ("train", "--tree", list(NAMED_TREES)),
]


@pytest.mark.parametrize("command, flag, names", ENUMERATED, ids=[f"{c} {f}" for c, f, _ in ENUMERATED])
def test_every_enumerated_flag_lists_its_registry(command: str, flag: str, names: list[str],
                                                   capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    options = " ".join(capsys.readouterr().out.split("options:", 1)[1].split())  # argparse wraps lines
    entry = options[options.index(flag):][:400]
    assert all(name in entry for name in names), entry


@pytest.mark.parametrize("argv, message", [
    (["search", "x", "--strategy", "diferentiable"], "unknown strategy 'diferentiable' (did you mean 'differentiable'?)"),
    (["retrain", "a.json", "--precision", "bf8"], "unknown precision 'bf8'"),
    (["search", "x", "--trials", "0"], "--trials: must be >= 1"),
    (["search", "x", "--workers", "-1"], "--workers: must be >= 0"),
    (["search", "x", "--timeout", "-5"], "--timeout: must be a finite number > 0"),
    (["retrain", "a.json", "--epochs", "two"], "--epochs: expected a whole number"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_bad_flags_are_one_line_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import write_tiny_space

    root = tmp_path_factory.mktemp("runs")
    space = write_tiny_space(root / "tiny.yaml")
    run_search(str(space), name="r", trials=3, strategy="sampled", runs_dir=root, progress=False)
    return root / "r"


def _without_torch(args: list[str]) -> tuple[str, str, int, str]:
    """Run the CLI in a fresh process: its exit code, whether torch was imported, what it printed."""
    code = ("import sys, contextlib, io\nfrom mtnas.cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n    try:\n        rc = main(sys.argv[1:])\n"
            "    except SystemExit as e:\n        rc = e.code\n"
            "print(rc, 'torch' in sys.modules, len(out.getvalue()))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    rc, torch_loaded, printed = proc.stdout.split()
    return rc, torch_loaded, int(printed), proc.stderr


@pytest.mark.parametrize("argv", [["trials", "{run}"], ["trials", "{run}", "--json"], ["show", "{run}"],
                                  ["show", "{run}", "--json"], ["show", "{run}", "--trial", "2"], ["spaces"],
                                  ["spaces", "--json"], ["--help"], ["search", "--help"], ["worker", "--help"],
                                  ["spaces", "digit_gratings", "--yaml"]])
def test_read_only_commands_import_no_torch(argv: list[str], run_dir: Path) -> None:
    rc, torch_loaded, printed, err = _without_torch([a.format(run=run_dir) for a in argv])
    assert (rc, torch_loaded) == ("0", "False"), err
    assert printed > 0


_BODY = "backbone: {name: conv, layers: [{channels: 8}]}\ntasks: [digit]\n"
#: a space whose keys are wrong -> the command, the space, what its error says (before torch is imported)
SCHEMA_ERRORS = {
    "a top-level typo": (["train", "{space}"], f"dataset: {{name: digit_gratings}}\n{_BODY}trainig: 1\n",
                         "unknown key 'trainig' (did you mean 'training'?)"),
    "a dataset named twice": (["search", "{space}"], f"dataset: {{name: digit_gratings, factory: 'x:y'}}\n{_BODY}",
                              "give exactly one of 'name'"),
    "a typo in --set": (["baselines", "{space}", "--set", "serach.trials=3"], f"dataset: {{name: digit_gratings}}\n{_BODY}",
                        "unknown key 'serach' (did you mean 'search'?)"),
}


@pytest.mark.parametrize("case", list(SCHEMA_ERRORS))
def test_a_schema_error_is_answered_before_torch_is_imported(case: str, tmp_path: Path) -> None:
    argv, text, expected = SCHEMA_ERRORS[case]
    space = tmp_path / "s.yaml"
    space.write_text(text)
    rc, torch_loaded, _, err = _without_torch([a.format(space=space) for a in argv])
    assert (rc, torch_loaded) == ("2", "False") and expected in err, err


def test_json_of_show_trials_and_spaces(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["show", str(run_dir), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front and {"trial", "delta_m", "flops", "params", "sharing", "tree"} <= set(front[0])
    assert main(["trials", str(run_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows[0]["objectives"]) == {"delta_m", "flops"}  # by name
    assert main(["spaces", "--json"]) == 0
    assert "digit_gratings" in {s["space"] for s in json.loads(capsys.readouterr().out)}


def test_search_json_names_the_run_and_its_front(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.conftest import write_tiny_space

    space = write_tiny_space(tmp_path / "tiny.yaml")
    assert main(["search", str(space), "--name", "j", "--trials", "2", "--strategy", "sampled",
                 "--runs-dir", str(tmp_path), "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run"] == str(tmp_path / "j")
    assert all(set(f["objectives"]) == {"delta_m", "flops"} for f in result["front"])


def test_show_trial_gives_its_tree_metrics_and_hyperparameters(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    import optuna

    study = optuna.load_study(study_name="r", storage=f"sqlite:///{run_dir / 'study.db'}")
    trial = study.trials[2]
    assert main(["show", str(run_dir), "--trial", "2", "--json"]) == 0
    details = json.loads(capsys.readouterr().out)
    assert details["state"] == "COMPLETE" and details["reference"] is None
    assert details["hyperparameters"] == trial.params and details["val"] == trial.user_attrs["val"]
    assert details["sharing"] == trial.user_attrs["tree"]
    assert main(["show", str(run_dir), "--trial", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("trial 2: COMPLETE (searched tree)")
    assert "per-task metrics after the proxy training:" in text and "hyperparameters: " in text
    for task, metrics in trial.user_attrs["test"].items():
        assert any(line.split()[:2] == [task, "accuracy"] for line in text.splitlines()), task
    assert main(["show", str(run_dir), "--trial", "1"]) == 0
    assert capsys.readouterr().out.startswith("trial 1: COMPLETE (reference tree: independent)")
    assert main(["show", str(run_dir), "--trial", "9"]) == 2
    assert "trial 9 is not a trial of this run; its trials: 0-2" in capsys.readouterr().err


def test_compare_puts_two_fronts_side_by_side(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    other = tmp_path / "again"
    shutil.copytree(run_dir, other)  # the same study under another name
    picture = tmp_path / "both.png"
    assert main(["compare", str(run_dir), str(other), "-o", str(picture), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in result["runs"]] == ["r", "again"]
    assert result["runs"][0]["front"] == result["runs"][1]["front"]
    assert all(set(r["references"]) == {"all-shared", "independent"} for r in result["runs"])
    assert all(p["fixed"] is None for r in result["runs"] for p in r["front"])  # the searched trees
    assert picture.read_bytes()[:4] == b"\x89PNG" and result["notes"] == []
    assert main(["compare", str(run_dir), str(other), "-o", str(picture)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["r", "again"] and lines[2].split() == ["strategy", "sampled", "sampled"]
    assert main(["compare", str(run_dir)]) == 2
    assert "compare needs two runs or more" in capsys.readouterr().err
