"""mtnas retrain: its files, exact resume after SIGKILL, DDP under torchrun, and refused weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mtnas.cli import main
from mtnas.core import MtnasError
from mtnas.model import (
    BranchedNet,
    arch_space,
    find_checkpoint,
    load_checkpoint,
    load_into,
    load_state,
    load_weights,
    save_checkpoint,
    save_weights,
)
from mtnas.space import load_resolved
from mtnas.train import curve_data, evaluate, resolve_precision, retrain
from mtnas.tree import Architecture, BranchingTree
from tests._wait import wait_until

from .conftest import write_tiny_space

TASKS = ["digit", "orientation"]
FINAL_KEYS = {
    "val", "test", "single_task", "delta_m", "params", "flops", "samples_per_s", "seconds", "device",
    "precision", "epochs", "world_size", "tree_key", "seed",
}


def write_arch(folder: Path, epochs: int = 2) -> Path:
    """An arch.json on a two-task tiny space: shared for two layers, then one branch per task."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_tiny_space(folder / "tiny.yaml", epochs=epochs)
    data = yaml.safe_load(path.read_text())
    data["tasks"] = TASKS
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    space, _ = load_resolved(path)
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {2: [(t,) for t in TASKS]})
    return Architecture(tree, space.to_dict()).save(folder / "arch.json")


def cli_env() -> dict[str, str]:
    # One thread, as in this process (conftest), so subprocess and in-process results agree bit for bit.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def test_retrain_writes_its_files_and_weights_reload(tmp_path: Path) -> None:
    arch_path = write_arch(tmp_path)
    report = retrain(arch_path, device="cpu", progress=False)
    out = tmp_path / "retrain"
    final = json.loads((out / "final.json").read_text())
    assert FINAL_KEYS <= set(final)
    assert final == json.loads(json.dumps(report.to_dict()))
    assert final["epochs"] == 2 and final["world_size"] == 1 and final["precision"] == "fp32"
    assert final["device"] == "cpu" and final["params"] > 0 and final["flops"] > 0
    assert set(final["test"]) == set(TASKS) and set(final["single_task"]["test"]) == set(TASKS)
    assert all(0.0 <= final["test"][t]["accuracy"] <= 1.0 for t in TASKS)

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert all(set(line["train_loss"]) == set(TASKS) and line["lr"] > 0 and line["samples_per_s"] > 0 for line in lines)
    assert lines[-1]["val"] == final["val"]
    curves = curve_data(lines, report.space)
    assert curves.epochs == [1, 2] and len(curves.train_loss["digit"]) == 2
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    arch = Architecture.load(arch_path)
    space, bundle = load_resolved(arch_space(arch))
    state = load_weights(out / "weights.safetensors", tree_key=arch.tree.key)
    models = [BranchedNet.from_space(arch.tree, space) for _ in range(2)]
    for model in models:
        load_into(model, state, "final weights")
        model.eval()
    x = bundle.test.inputs[:8]
    first, second = models[0](x), models[1](x)
    assert all(torch.equal(first[t], second[t]) for t in TASKS)
    assert evaluate(models[0], bundle.test.only(space.task_names), space) == final["test"]

    # A second fresh run must not silently overwrite the first one.
    with pytest.raises(MtnasError, match="already holds a retrain checkpoint; pass --resume"):
        retrain(arch_path, device="cpu", progress=False)


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    epochs = 8
    arch_path = write_arch(tmp_path, epochs=epochs)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtnas", "retrain", str(arch_path), "-o", str(killed), "--device", "cpu", "--quiet"],
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    metrics = killed / "metrics.jsonl"
    try:
        wait_until(lambda: proc.poll() is not None or (metrics.is_file() and metrics.read_text().count("\n") >= 2),
                   timeout=120, interval=0.005, what="two epochs of the retrain")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (killed / "final.json").exists()
    found = find_checkpoint(killed / "checkpoint")  # the kill may land between the folder renames
    assert found is not None
    done = load_state(found / "state.pt")["epoch"]
    assert 1 <= done < epochs  # killed mid-training

    assert main(["retrain", str(arch_path), "-o", str(killed), "--device", "cpu", "--resume", "--json", "--quiet"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert main(["retrain", str(arch_path), "-o", str(tmp_path / "whole"), "--device", "cpu", "--json", "--quiet"]) == 0
    whole = json.loads(capsys.readouterr().out)

    assert resumed["test"] == whole["test"] and resumed["val"] == whole["val"]
    assert resumed["delta_m"] == whole["delta_m"]
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(1, epochs + 1))
    whole_lines = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [line["train_loss"] for line in lines] == [line["train_loss"] for line in whole_lines]

    # Resuming with another seed would not continue the same run.
    assert main(["retrain", str(arch_path), "-o", str(killed), "--resume", "--seed", "5", "--quiet"]) == 2
    assert "--seed 5 differs from the checkpoint's 0" in capsys.readouterr().err


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arch_path = write_arch(tmp_path)
    assert main(["retrain", str(arch_path), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint to resume from" in err


def test_torchrun_two_ranks_on_gloo(tmp_path: Path) -> None:
    arch_path = write_arch(tmp_path)
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "mtnas", "retrain", str(arch_path), "-o", str(out), "--device", "cpu", "--quiet"],
        env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("delta-m:") == 1  # only rank 0 prints
    final = json.loads((out / "final.json").read_text())
    assert final["world_size"] == 2 and final["epochs"] == 2
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint", "curves.png", "final.json", "metrics.jsonl", "weights.safetensors"
    ]


@pytest.fixture
def arch_and_space(tmp_path: Path):
    arch_path = write_arch(tmp_path)
    arch = Architecture.load(arch_path)
    return arch_path, arch, arch_space(arch)


def _weights_of(tree: BranchingTree, space, path: Path) -> Path:
    return save_weights(path, BranchedNet.from_space(tree, space).state_dict(), tree_key=tree.key,
                        extra_metadata={"tree": tree.describe()})


def test_weights_for_another_tree_are_refused(arch_and_space, tmp_path: Path) -> None:
    _, arch, space = arch_and_space
    other = BranchingTree.independent(space.task_names, space.num_layers)
    path = _weights_of(other, space, tmp_path / "other.safetensors")
    with pytest.raises(MtnasError, match=f"weights are for tree {other.key} .*the architecture is tree {arch.tree.key}"):
        load_weights(path, tree_key=arch.tree.key)
    # Same key but tensors of another tree: load_into names the missing and unexpected tensors.
    with pytest.raises(MtnasError, match=r"do not fit the model: 12 unexpected tensor\(s\) \(layers.0.1"):
        load_into(BranchedNet.from_space(arch.tree, space), load_weights(path), path)


def test_truncated_and_tampered_weights_are_refused(arch_and_space, tmp_path: Path) -> None:
    _, arch, space = arch_and_space
    good = _weights_of(arch.tree, space, tmp_path / "good.safetensors")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    tampered = tmp_path / "tampered.safetensors"
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF  # inside the last tensor's bytes; the header is at the start
    tampered.write_bytes(bytes(flipped))
    assert load_weights(good, tree_key=arch.tree.key).keys() == BranchedNet.from_space(arch.tree, space).state_dict().keys()
    with pytest.raises(MtnasError, match="truncated.safetensors: damaged or truncated weights file"):
        load_weights(truncated)
    with pytest.raises(MtnasError, match="tampered.safetensors: weights do not match their checksum"):
        load_weights(tampered)
    with pytest.raises(MtnasError, match="nope.safetensors: no such weights file"):
        load_weights(tmp_path / "nope.safetensors")
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(MtnasError, match="not an mtnas weights file"):
        load_weights(plain)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("another tree", "weights are for tree"),
        ("truncated", "damaged or truncated weights file"),
        ("tampered", "weights do not match their checksum"),
    ],
)
def test_cli_refuses_bad_weights_in_one_line(
    kind: str, message: str, arch_and_space, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    arch_path, arch, space = arch_and_space
    tree = BranchingTree.independent(space.task_names, space.num_layers) if kind == "another tree" else arch.tree
    path = _weights_of(tree, space, tmp_path / "w.safetensors")
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[:-100])
    elif kind == "tampered":
        path.write_bytes(data[:-4] + bytes(b ^ 0x55 for b in data[-4:]))
    assert main(["retrain", str(arch_path), "--init", "inherited", "--weights", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mtnas: error: ") and message in err and "w.safetensors" in err
    assert not (tmp_path / "retrain").exists()


def test_inherited_weights_are_the_starting_point(tmp_path: Path) -> None:
    arch_path = write_arch(tmp_path, epochs=1)
    arch = Architecture.load(arch_path)
    space = arch_space(arch)

    def first_losses(out: str, **kwargs) -> dict:
        retrain(arch_path, out_dir=tmp_path / out, device="cpu", seed=0, progress=False, **kwargs)
        return json.loads((tmp_path / out / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]

    for seed, name in ((0, "seed0.safetensors"), (7, "seed7.safetensors")):
        torch.manual_seed(seed)
        _weights_of(arch.tree, space, tmp_path / name)
    (tmp_path / "seed0.safetensors").rename(tmp_path / "weights.safetensors")  # the default, beside arch.json
    scratch = first_losses("scratch")
    assert first_losses("same", init="inherited") == scratch  # seed-0 weights are what scratch starts from
    assert first_losses("other", init="inherited", weights=tmp_path / "seed7.safetensors") != scratch
    with pytest.raises(MtnasError, match="--weights is only read with --init inherited"):
        retrain(arch_path, weights=tmp_path / "seed7.safetensors", progress=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cpu", "--precision", "fp16"], "--precision fp16 needs a CUDA device"),
        (["--device", "cuda"], "device 'cuda' is not available on this machine"),
    ],
)
def test_unsupported_device_or_precision_exits_2(
    args: list[str], message: str, arch_and_space, capsys: pytest.CaptureFixture
) -> None:
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    arch_path, _, _ = arch_and_space
    assert main(["retrain", str(arch_path), *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_precision_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(MtnasError, match="unknown precision 'bf61'"):
        resolve_precision("bf61", cpu)


class _NotPlainData:
    pass


def test_checkpoint_survives_a_kill_between_renames_and_state_is_never_unpickled(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    save_checkpoint(folder, {"w": torch.ones(2)}, {"epoch": 1}, tree_key="k")
    save_checkpoint(folder, {"w": torch.full((2,), 2.0)}, {"epoch": 2}, tree_key="k")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    os.replace(folder, tmp_path / ".checkpoint.old")  # what a kill between the two renames leaves
    weights, state = load_checkpoint(folder, tree_key="k")
    assert state["epoch"] == 2 and torch.equal(weights["w"], torch.full((2,), 2.0))

    torch.save({"epoch": 3, "obj": _NotPlainData()}, tmp_path / "evil.pt")
    with pytest.raises(MtnasError, match=r"evil.pt: training-state file: refused: it pickles a tests\.test_retrain\._NotPlainData"):
        load_state(tmp_path / "evil.pt")


def test_host_resident_data_trains_exactly_like_device_resident(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset too large for the accelerator stays in host memory and is copied batch by batch;
    the result is the same run."""
    from mtnas.train import _retrain as retrain_module

    arch_path = write_arch(tmp_path, epochs=1)
    on_device = retrain(arch_path, out_dir=tmp_path / "device", device="cpu", seed=0, data="device", progress=False)
    monkeypatch.setattr(retrain_module, "RESIDENT_MAX_BYTES", 1)  # nothing fits: auto picks host memory
    bundle = load_resolved(arch_space(Architecture.load(arch_path)))[1]
    assert retrain_module.data_placement("auto", bundle, torch.device("cuda")) == "host"
    assert retrain_module.data_placement("auto", bundle, torch.device("cpu")) == "device"  # host *is* the device
    on_host = retrain(arch_path, out_dir=tmp_path / "host", device="cpu", seed=0, data="host", progress=False)
    assert on_host.test == on_device.test and on_host.val == on_device.val
    assert json.loads((tmp_path / "host" / "final.json").read_text())["data"] == "host"
    with pytest.raises(MtnasError, match="unknown data placement 'gpu'"):
        retrain_module.data_placement("gpu", bundle, torch.device("cpu"))


@pytest.fixture(scope="module")
def finished_retrain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An arch.json and the folder of its finished 1-epoch retrain (checkpoint included)."""
    folder = tmp_path_factory.mktemp("finished")
    arch_path = write_arch(folder, epochs=1)
    retrain(arch_path, device="cpu", progress=False)
    return arch_path, folder / "retrain"


_MISSING = object()


def _tamper(state: dict, key: str, value: object) -> None:
    *parents, leaf = (int(part) if part.isdigit() else part for part in key.split("."))
    where = state
    for part in parents:
        where = where[part]
    if value is _MISSING:
        del where[leaf]
    else:
        where[leaf] = value


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("epoch", -3, "epoch is -3, expected an integer >= 0"),
    ("epoch", 7, "epoch is 7, more than the run's 1 epochs"),
    ("epoch", True, "epoch is True, expected an integer >= 0"),
    ("epoch", 1.0, "epoch is 1.0, expected an integer >= 0"),
    ("epoch", _MISSING, "epoch is missing"),
    ("history", _MISSING, "history is missing"),
    ("history", [1, 2], "history is [1, 2], expected a list of epoch records"),
    ("history", [], "history has 0 epoch records for epoch 1"),
    ("optimizer", "adam", "optimizer is 'adam', expected an optimizer state"),
    ("generator", torch.zeros(3), "generator is tensor("),
    ("torch_rng", None, "torch_rng is None, expected an RNG state"),
    ("config.seed", -1, "config.seed is -1, expected an integer in 0..4294967295"),
    ("config.epochs", "many", "config.epochs is 'many', expected an integer >= 1"),
    ("config.precision", "fp8", "config.precision is 'fp8', expected one of auto, bf16, fp16, fp32"),
    ("config.init", _MISSING, "config.init is missing"),
    ("config", [], "config is [], expected a mapping"),
    ("format", "pickle", "format is 'pickle', expected 'mtnas-retrain-state'"),
    ("version", 99, "version is 99, expected 1"),
    # the content, checked against the state this run would create
    ("torch_rng", torch.zeros(16, dtype=torch.uint8), "torch_rng holds 16 bytes, this run's RNG state 5056"),
    ("generator", torch.zeros(5000, dtype=torch.uint8), "generator holds 5000 bytes"),
    ("optimizer.param_groups", [], "optimizer has 0 parameter group(s), this run's optimizer 1"),
    ("optimizer.param_groups.0.params", [0, 1], "optimizer.param_groups[0] does not list this run's 22 parameters"),
    ("optimizer.param_groups.0.lr", "0.01", "optimizer.param_groups[0].lr is '0.01', expected a finite number"),
    ("optimizer.param_groups.0.lr", 1e39, "optimizer.param_groups[0].lr is 1e+39, expected a finite number"),
    ("optimizer.param_groups.0.betas", (0.9,), "optimizer.param_groups[0].betas is (0.9,), expected 2 item(s)"),
    ("optimizer.state.0.exp_avg", torch.zeros(2, 2), "optimizer.state[0].exp_avg has shape (2, 2), its parameter"),
    ("optimizer.state.0.exp_avg", torch.zeros(1, dtype=torch.int64), "optimizer.state[0].exp_avg is a torch.int64 tensor"),
    ("optimizer.state.999", {}, "optimizer.state[999] is not the state of one of this run's parameters"),
    ("schedule.last_epoch", "x", "schedule.last_epoch is 'x', expected a finite number"),
    ("schedule.base_lrs", _MISSING, "schedule is not this run's mapping (missing base_lrs)"),
    ("history.0.train_loss", {"a": "low"}, "history[0].train_loss is {'a': 'low'}, expected a finite loss per task"),
    ("history.0.lr", [1], "history[0].lr is [1], expected a finite number"),
    ("history.0.epoch", 5, "history[0].epoch is 5, expected 1"),
    ("history.0.val", {}, "history[0].val is {}, expected this space's metrics per task"),
])
def test_a_tampered_retrain_state_is_refused_on_resume_in_one_line(
    finished_retrain: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture, key: str, value: object,
    problem: str,
) -> None:
    import shutil

    from mtnas.model import save_state

    arch_path, done = finished_retrain
    out = tmp_path / "retrain"
    shutil.copytree(done, out)
    state = load_state(out / "checkpoint" / "state.pt")
    _tamper(state, key, value)
    save_state(out / "checkpoint" / "state.pt", state)
    assert main(["retrain", str(arch_path), "-o", str(out), "--device", "cpu", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{out / 'checkpoint' / 'state.pt'}: not a valid mtnas retrain state ({problem}" in err, err
    assert "start over in this folder with --restart, or a fresh run in another folder (-o)" in err


def test_restart_is_the_way_out_of_a_damaged_checkpoint(finished_retrain: tuple[Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    import shutil

    arch_path, done = finished_retrain
    out = tmp_path / "retrain"
    shutil.copytree(done, out)
    (out / "checkpoint" / "state.pt").write_bytes(b"\x80\x02garbage")
    args = ["retrain", str(arch_path), "-o", str(out), "--device", "cpu", "--quiet"]
    assert main([*args, "--resume"]) == 2
    assert "--restart" in capsys.readouterr().err
    assert main(args) == 2  # a checkpoint is there: neither resumed nor overwritten silently
    assert "--restart to discard it" in capsys.readouterr().err
    assert main([*args, "--restart", "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["epochs"] == 1
    assert load_state(out / "checkpoint" / "state.pt")["epoch"] == 1  # a new, sound checkpoint
