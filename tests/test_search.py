"""One search, every method: determinism, routing history, inheritance, no NaN, a planted split."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mtnas.core import load_plugins
from mtnas.model import BranchedNet
from mtnas.search import (
    METHODS,
    Routing,
    affinity_prior,
    scaled_affinity,
    search_tree,
    temperature,
)
from mtnas.space import BUILTIN_DIR, SearchConfig, load_resolved, space_from_dict
from tests._spaces import load_builtin

BUILTINS = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
TINY = {"epochs": 3, "warmup_epochs": 1, "proxy_epochs": 1}


def _tiny(name: str):
    space, bundle = load_builtin(name)
    small = replace(bundle, train=bundle.train.select(slice(0, 96)))
    return replace(space, search=replace(space.search, **TINY)), small


def test_temperature_anneals_from_tau0_to_tau_min() -> None:
    cfg = SearchConfig(epochs=10, warmup_epochs=2, tau0=4.0, tau_min=0.25)
    taus = [temperature(e, cfg) for e in range(10)]
    assert taus[0] == taus[2] == 4.0 and taus[-1] == pytest.approx(0.25)
    assert all(a >= b for a, b in zip(taus, taus[1:]))


def test_same_seed_same_tree_and_routing(tmp_path: Path) -> None:
    space, bundle = _tiny("digit_gratings")
    space = replace(space, search=replace(space.search, method="affinity"))  # a supernet search
    a = search_tree(space, bundle, seed=3)
    b = search_tree(space, bundle, seed=3)
    assert a.tree == b.tree
    assert np.array_equal(a.routing["heads"], b.routing["heads"])
    path = a.save_routing(tmp_path / "routing.npz")
    saved = np.load(path)
    assert saved["heads"].shape == (3, len(space.tasks), space.branches_per_layer[-1])
    assert saved["layer1"].shape == (3, 3, 3) and saved["tau"].shape == (3,)
    assert list(saved["tasks"]) == list(space.task_names)
    # no search.stable_epochs: every epoch runs, and the argmax tree's stability is recorded
    assert a.stopped_epoch is None and a.epochs_run == 3 and saved["unchanged"].shape == (3,)
    assert saved["unchanged"][0] == 0  # a warm-up epoch decides nothing
    # Routing rows are probability distributions.
    assert np.allclose(saved["heads"].sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("method", METHODS.names())
def test_inherited_weights_load_into_the_derived_tree(method: str) -> None:
    space, bundle = _tiny("digit_gratings")
    result = search_tree(space, bundle, seed=0, hparams=replace(space.search, method=method))
    model = BranchedNet.from_space(result.tree, space)
    model.load_state_dict(dict(result.weights))  # strict: every key present, every shape right


def _runs_without_nan(name: str, method: str) -> None:
    space, bundle = _tiny(name)
    space = replace(space, search=replace(space.search, method=method))
    result = search_tree(space, bundle, seed=0)
    assert all(np.isfinite(v).all() for v in result.routing.values())
    numeric = {k: v for k, v in result.candidates.items() if v.dtype.kind in "fiub" and k != "delta_m_again"}
    assert all(np.isfinite(v).all() for v in numeric.values())
    assert not np.isinf(result.candidates.get("delta_m_again", np.zeros(1))).any()  # NaN: not trained again
    assert all(torch.isfinite(w).all() for w in result.weights.values() if w.is_floating_point())
    result.tree.check_against(space.task_names, space.num_layers)


@pytest.mark.parametrize("name", BUILTINS)
def test_search_runs_without_nan_on_every_space(name: str) -> None:
    # every space through the supernet (the cheapest search); the default trained search runs on
    # tasks of every kind below and on the planted spaces in tests/test_trained_search.py
    _runs_without_nan(name, "plain")


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_runs_without_nan_on_tasks_of_every_kind(method: str) -> None:
    _runs_without_nan("digit_grating_kinds", method)


# DMTG's assignment is selfish (each task goes where its own loss is lowest): on this space both tasks
# may settle on the branch that serves each best early, so it is not held to splitting them.
@pytest.mark.parametrize("method", [m for m in METHODS.names() if m != "dmtg"])
def test_tasks_that_need_opposite_features_are_split(tmp_path: Path, method: str, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    load_plugins(["_conflict_data"])  # the user opts into the module; the space names the dataset
    data = {
        "dataset": {"name": "conflict_data"},
        "backbone": {"name": "mlp", "layers": [{"width": 32}, {"width": 2}]},
        "tasks": [{"name": "left", "metrics": ["mse"]}, {"name": "right", "metrics": ["mse"]}],
        "routing": {"max_branches": 2, "branching_layers": [1]},
        "training": {"batch_size": 64, "lr": 0.01},
        "search": {"epochs": 12, "warmup_epochs": 3, "cost_weight": 0.0, "routing_lr": 0.1, "method": method},
    }
    space, bundle = load_resolved(space_from_dict(data))
    result = search_tree(space, bundle, seed=0)
    assert result.tree.groups_at(0) == (("left", "right"),)
    assert result.tree.groups_at(1) == (("left",), ("right",))


def test_scaled_affinity_is_in_units_of_the_self_affinity() -> None:
    raw = torch.tensor([[2.0, 0.5, -0.1], [0.5, 4.0, 0.0], [-0.1, 0.0, 0.0]])
    a = scaled_affinity(raw)
    assert torch.allclose(a.diagonal(), torch.zeros(3))
    assert a[0, 1].item() == pytest.approx(0.5 / 2.0)  # mean self-affinity (2 + 4 + 0) / 3 = 2
    assert torch.allclose(scaled_affinity(7.0 * raw), a)  # scale-free: the loss's units cancel
    # Noise between unrelated tasks stays small: it is not stretched to the strongest pair's +-1.
    noise = torch.tensor([[1.0, 0.01], [0.01, 1.0]])
    assert scaled_affinity(noise)[0, 1].item() == pytest.approx(0.01)


def test_the_affinity_prior_pulls_a_task_as_hard_whatever_the_number_of_tasks() -> None:
    class Net(torch.nn.Module):
        def __init__(self, t: int) -> None:
            super().__init__()
            self.routing = Routing([f"t{i}" for i in range(t)], (2, 2), (False, True))
            with torch.no_grad():  # the same logits for the tasks the two sizes have in common
                self.routing.head_logits.copy_(torch.stack([torch.arange(t) * 0.3, torch.arange(t) * -0.2], 1))

    def pull(t: int) -> torch.Tensor:
        net = Net(t)
        a = torch.zeros(t, t)
        a[0, 1] = a[1, 0] = 0.5  # task 0 helps task 1; the tasks added beyond them are unrelated
        (grad,) = torch.autograd.grad(affinity_prior(net, a), net.routing.head_logits)
        return grad[:2]

    small, large = pull(3), pull(40)
    assert small.abs().sum() > 0
    assert torch.allclose(small, large[:2], atol=1e-6)
    # The pull lowers the prior by moving task 0 towards task 1's likelier node.
    net = Net(3)
    a = torch.zeros(3, 3)
    a[0, 1] = a[1, 0] = 0.5
    before = affinity_prior(net, a)
    (grad,) = torch.autograd.grad(before, net.routing.head_logits)
    with torch.no_grad():
        net.routing.head_logits -= 0.5 * grad
    assert affinity_prior(net, a) < before
