"""Loss balancing: each method's defining property, the config keys, and its use in training,
the search, a study and an exactly resumed retrain."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from mtnas.core import ConfigError
from mtnas.model import BranchedNet, arch_space, load_checkpoint
from mtnas.nn import BALANCERS, DWA, Equal, PCGrad, Uncertainty, pcgrad_project, shared_parameters
from mtnas.search import search_tree
from mtnas.space import load_resolved, load_space, space_from_dict
from mtnas.study import _optimize as study_module
from mtnas.train import _retrain as retrain_module
from mtnas.train import train_model
from mtnas.tree import Architecture, BranchingTree

from .conftest import write_tiny_space


def _losses(model: nn.Linear, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = model(x)  # (B, 2): one column per task
    return {"a": (out[:, 0] - 1).pow(2).mean(), "b": (out[:, 1] + 2).abs().mean()}


# --- the methods --------------------------------------------------------------------------------


def test_equal_gives_the_gradients_of_the_plain_sum() -> None:
    torch.manual_seed(0)
    x, model = torch.randn(8, 3), nn.Linear(3, 2)
    sum(_losses(model, x).values()).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    total = Equal(["a", "b"]).backward(_losses(model, x), list(model.parameters()))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), expected))
    assert float(total) == pytest.approx(float(sum(_losses(model, x).values()).detach()))


def test_uncertainty_gradient_and_optimum_are_those_of_kendall_et_al() -> None:
    balancer = Uncertainty(["a", "b"])
    with torch.no_grad():
        balancer.log_vars.copy_(torch.tensor([0.3, -0.5]))
    fixed = {"a": torch.tensor(2.0), "b": torch.tensor(0.25)}
    balancer.backward(fixed, [])
    s = balancer.log_vars.detach()
    expected = 1 - torch.exp(-s) * torch.tensor([2.0, 0.25])  # d/ds_t (exp(-s_t) L_t + s_t)
    assert torch.allclose(balancer.log_vars.grad, expected)

    # On fixed losses an optimizer drives s_t toward its optimum log L_t.
    balancer = Uncertainty(["a", "b"])
    optimizer = torch.optim.Adam(balancer.parameters(), lr=0.05)
    target = torch.log(torch.tensor([2.0, 0.25]))
    gaps = []
    for _ in range(200):
        optimizer.zero_grad()
        balancer.backward(fixed, [])
        optimizer.step()
        gaps.append((balancer.log_vars.detach() - target).abs())
    assert (gaps[10] < target.abs()).all() and (gaps[-1] < 0.05).all()


def test_dwa_weights_follow_the_loss_ratios() -> None:
    tasks = ["a", "b", "c"]
    balancer = DWA(tasks)
    history = [{"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 0.5, "b": 0.9, "c": 0.7}]
    for epoch in (0, 1):
        balancer.start_epoch(epoch, history[:epoch])
        assert balancer.weights == {"a": 1.0, "b": 1.0, "c": 1.0}
    balancer.start_epoch(2, history)
    w = balancer.weights
    assert sum(w.values()) == pytest.approx(len(tasks))
    assert max(w, key=w.get) == "b" and min(w, key=w.get) == "a"  # b's loss fell least
    ratios = np.array([0.5, 0.9, 0.7])
    expected = 3 * np.exp(ratios / 2) / np.exp(ratios / 2).sum()  # temperature 2
    assert np.allclose([w[t] for t in tasks], expected)
    # The loss it backpropagates is the weighted sum.
    losses = {t: torch.tensor(float(i + 1), requires_grad=True) for i, t in enumerate(tasks)}
    assert float(balancer.backward(losses, [])) == pytest.approx(sum(w[t] * (i + 1) for i, t in enumerate(tasks)))
    assert all(losses[t].grad == pytest.approx(w[t]) for t in tasks)


def test_pcgrad_removes_conflicts_and_keeps_agreeing_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1 . g2 = -1: they conflict
    total = pcgrad_project(torch.stack([g1, g2]), gen)
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2  # projections onto the other's normal plane
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    assert p1 @ g2 == pytest.approx(0.0, abs=1e-6) and p2 @ g1 == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(total, p1 + p2)
    agreeing = torch.stack([torch.tensor([1.0, 0.5]), torch.tensor([0.2, 1.0])])
    assert torch.equal(pcgrad_project(agreeing, gen), agreeing.sum(0))


def test_pcgrad_on_a_tiny_linear_model_equals_the_hand_computation() -> None:
    """pred_t = c_t * (w . x), L_t = (pred_t - y_t)^2 / 2: w is shared, c_t is task t's head."""
    x = torch.tensor([1.0, 2.0])
    w = nn.Parameter(torch.tensor([0.5, -0.25]))
    heads = {"a": nn.Parameter(torch.tensor(2.0)), "b": nn.Parameter(torch.tensor(-1.0))}
    y = {"a": 3.0, "b": 1.0}
    h = float(w.detach() @ x)  # 0.0
    losses = {t: 0.5 * (heads[t] * (w @ x) - y[t]) ** 2 for t in heads}
    PCGrad(list(heads)).backward(losses, [w])
    # by hand: dL_t/dw = (c_t h - y_t) c_t x, dL_t/dc_t = (c_t h - y_t) h
    r = {t: float(heads[t].detach()) * h - y[t] for t in heads}
    ga, gb = (r[t] * float(heads[t].detach()) * x for t in heads)  # (-6, -12) and (1, 2): they conflict
    assert ga @ gb < 0
    pa = ga - (ga @ gb) / (gb @ gb) * gb
    pb = gb - (gb @ ga) / (ga @ ga) * ga
    assert torch.allclose(w.grad, pa + pb)
    assert all(heads[t].grad == pytest.approx(r[t] * h) for t in heads)  # heads: their own gradient only


def test_shared_parameters_are_the_backbone_blocks(tmp_path: Path) -> None:
    space, _ = load_resolved(write_tiny_space(tmp_path / "s.yaml"))
    model = BranchedNet.from_space(BranchingTree.all_shared(space.task_names, space.num_layers), space)
    shared = {id(p) for p in shared_parameters(model)}
    assert shared == {id(p) for p in model.layers.parameters()}
    assert not shared & {id(p) for p in model.heads.parameters()}


@pytest.mark.parametrize("name", BALANCERS.names())
def test_every_balancer_keeps_its_state_through_a_checkpoint(name: str) -> None:
    torch.manual_seed(0)
    x, model = torch.randn(8, 3), nn.Linear(3, 2)
    first = BALANCERS.get(name)(["a", "b"], seed=1)
    for p in first.parameters():
        with torch.no_grad():
            p.add_(torch.tensor([0.5, -0.5]))
    first.backward(_losses(model, x), list(model.parameters()))
    second = BALANCERS.get(name)(["a", "b"], seed=2)
    second.load_state_dict(first.state_dict())
    grads = []
    for balancer in (first, second):
        model.zero_grad(set_to_none=True)
        balancer.backward(_losses(model, x), list(model.parameters()))
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


# --- the config ----------------------------------------------------------------------------------


def test_balancing_keys_parse_and_typos_name_the_key_path() -> None:
    data = load_space("digit_gratings").to_dict()
    assert data["training"]["balancing"] == "equal" and data["search"]["ranges"]["balancing"] is None
    data["training"]["balancing"] = "pcgrad"
    data["search"]["ranges"]["balancing"] = ["equal", "dwa"]
    space = space_from_dict(data)
    assert space.training.balancing == "pcgrad" and space.search.ranges.balancing == ("equal", "dwa")
    assert space_from_dict(space.to_dict()) == space  # round trip
    data["training"]["balancing"] = "pcgard"
    with pytest.raises(ConfigError, match=r"^space\.training\.balancing: unknown loss balancing 'pcgard' "
                                          r"\(did you mean 'pcgrad'\?\); valid: dwa, equal, pcgrad, uncertainty"):
        space_from_dict(data)
    data["training"]["balancing"] = "equal"
    data["search"]["ranges"]["balancing"] = ["equal", "uncertainy"]
    with pytest.raises(ConfigError, match=r"^space\.search\.ranges\.balancing: .*'uncertainy' \(did you mean 'uncertainty'"):
        space_from_dict(data)


# --- in training, the search, a study, a retrain ------------------------------------------------


@pytest.mark.parametrize("name", BALANCERS.names())
def test_train_model_learns_with_every_balancer(name: str, tmp_path: Path) -> None:
    space, bundle = load_resolved(write_tiny_space(tmp_path / "s.yaml", epochs=3, balancing=name))
    torch.manual_seed(0)
    model = BranchedNet.from_space(BranchingTree.all_shared(space.task_names, space.num_layers), space)
    result = train_model(model, space, bundle, device=torch.device("cpu"), seed=0)
    totals = [h["total"] for h in result.history]
    assert all(math.isfinite(v) for v in totals) and totals[-1] < totals[0]
    assert all(0.0 <= m["accuracy"] <= 1.0 for m in result.val.values())


@pytest.mark.parametrize("name", ["uncertainty", "dwa", "pcgrad"])
def test_the_supernet_search_runs_with_every_balancer(name: str, tmp_path: Path) -> None:
    space, bundle = load_resolved(write_tiny_space(tmp_path / "s.yaml", balancing=name))
    space = replace(space, search=replace(space.search, epochs=3, warmup_epochs=1))
    result = search_tree(space, bundle, seed=0)
    assert all(np.isfinite(v).all() for v in result.routing.values())
    assert all(torch.isfinite(w).all() for w in result.weights.values() if w.is_floating_point())
    if name == "pcgrad":  # the weight steps differ from the plain sum's
        plain = search_tree(replace(space, training=replace(space.training, balancing="equal")), bundle, seed=0)
        assert any(not torch.equal(result.weights[k], plain.weights[k]) for k in plain.weights)


def test_a_study_samples_the_balancing_and_trains_the_trial_with_it(tmp_path: Path) -> None:
    path = write_tiny_space(tmp_path / "tiny.yaml")
    data = yaml.safe_load(path.read_text())
    data["search"].update({"epochs": 2, "warmup_epochs": 1, "proxy_epochs": 1})
    data["search"].setdefault("ranges", {})["balancing"] = ["uncertainty", "pcgrad"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    run, study = study_module.run_search(str(path), name="r", trials=3, runs_dir=tmp_path, progress=False)
    trial = study.trials[2]  # the first sampled trial (0 and 1 are the enqueued fixed trees)
    assert trial.params["balancing"] in ("uncertainty", "pcgrad")
    assert trial.user_attrs["balancing"] == trial.params["balancing"]
    arch = Architecture.load(run.trial_dir(2) / "arch.json")  # what the trial's tree was trained with
    assert arch_space(arch).training.balancing == trial.params["balancing"]
    assert study.trials[0].user_attrs["balancing"] == "equal"  # the fixed trees keep the space's


class _Killed(Exception):
    pass


@pytest.mark.parametrize("name", ["uncertainty", "dwa"])
def test_retrain_resumes_exactly_with_a_stateful_balancer(name: str, tmp_path: Path, monkeypatch) -> None:
    epochs, kill_at = 4, 3
    path = write_tiny_space(tmp_path / "tiny.yaml", epochs=epochs, balancing=name)
    data = yaml.safe_load(path.read_text())
    data["tasks"] = ["digit", "orientation"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    space, _ = load_resolved(path)
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {2: [("digit",), ("orientation",)]})
    arch_path = Architecture(tree, space.to_dict()).save(tmp_path / "arch.json")

    real = retrain_module._Run._epoch

    def dies_at_epoch(run):  # a kill: the process ends after epoch `kill_at - 1` was checkpointed
        if run.epoch == kill_at - 1:
            raise _Killed
        return real(run)

    monkeypatch.setattr(retrain_module._Run, "_epoch", dies_at_epoch)
    with pytest.raises(_Killed):
        retrain_module.retrain(arch_path, out_dir=tmp_path / "killed", device="cpu", progress=False)
    monkeypatch.setattr(retrain_module._Run, "_epoch", real)
    _, state = load_checkpoint(tmp_path / "killed" / "checkpoint", tree_key=tree.key)
    assert state["epoch"] == kill_at - 1
    if name == "uncertainty":  # the log-variances moved, and the checkpoint holds them
        assert state["balancer"]["log_vars"].abs().min() > 0
    weights: list[dict[str, float]] = []
    real_start = DWA.start_epoch

    def recording(balancer, epoch, history):
        real_start(balancer, epoch, history)
        weights.append(dict(balancer.weights))

    monkeypatch.setattr(DWA, "start_epoch", recording)
    torch.manual_seed(123)  # the resumed run must not depend on this process's random state
    resumed = retrain_module.retrain(arch_path, out_dir=tmp_path / "killed", device="cpu", resume=True, progress=False)
    if name == "dwa":  # the resumed epoch is weighed by the loss history of the epochs before the kill
        assert all(w != 1.0 for w in weights[0].values())  # (later calls: the baselines of finish)
    whole = retrain_module.retrain(arch_path, out_dir=tmp_path / "whole", device="cpu", progress=False)
    lines = [[json.loads(x)["train_loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
             for d in ("killed", "whole")]
    assert len(lines[0]) == epochs and lines[0] == lines[1]
    assert resumed.test == whole.test and resumed.val == whole.val
    final = [load_checkpoint(tmp_path / d / "checkpoint", tree_key=tree.key)[1]["balancer"] for d in ("killed", "whole")]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[1])
