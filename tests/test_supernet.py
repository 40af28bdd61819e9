"""Supernet: compute-once, skip unreached nodes, gradients to routing logits, faithful inheritance."""

from __future__ import annotations

import pytest
import torch

from mtnas.model import BranchedNet
from mtnas.search import Supernet
from mtnas.space import BUILTIN_DIR, load_resolved
from tests._spaces import load_builtin

BUILTINS = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def gratings():
    return load_resolved("digit_gratings")


def _count_calls(net: Supernet) -> dict[tuple[int, int], int]:
    calls: dict[tuple[int, int], int] = {}
    for layer, blocks in enumerate(net.layers):
        for k, block in enumerate(blocks):
            block.register_forward_hook(lambda *_, key=(layer, k): calls.__setitem__(key, calls.get(key, 0) + 1))
    return calls


@pytest.mark.parametrize("seed", range(5))
def test_only_reached_nodes_are_computed_once_each(gratings, seed: int) -> None:
    space, bundle = gratings
    torch.manual_seed(seed)
    net = Supernet.from_space(space)
    with torch.no_grad():
        for p in net.routing.parameters():
            p.normal_(0, 2)
    calls = _count_calls(net)
    sample = net.routing.sample(1.0)
    net(bundle.train.inputs[:4], sample)
    expected = {(layer, k) for layer, used in enumerate(sample.used) for k in used}
    assert set(calls) == expected
    assert all(n == 1 for n in calls.values())
    assert len(calls) <= sum(net.routing.branches)


def test_every_routing_logit_of_the_sampled_tree_gets_a_gradient(gratings) -> None:
    space, bundle = gratings
    torch.manual_seed(0)
    net = Supernet.from_space(space)
    sample = net.routing.sample(1.0)
    out = net(bundle.train.inputs[:8], sample)
    sum(o.square().mean() for o in out.values()).backward()
    assert (net.routing.head_logits.grad.abs() > 0).all()
    for layer in range(1, len(net.layers)):
        grad = net.routing.layer_logits(layer).grad
        for k in sample.used[layer]:  # every parent logit of every used node
            assert (grad[k].abs() > 0).all(), (layer, k)


def test_soft_forward_reaches_every_logit(gratings) -> None:
    space, bundle = gratings
    net = Supernet.from_space(space)
    out = net.forward_soft(bundle.train.inputs[:8], tau=1.0)
    sum(o.square().mean() for o in out.values()).backward()
    assert all((p.grad.abs() > 0).all() for p in net.routing.parameters())


def test_inherited_weights_reproduce_the_supernet_outputs(gratings) -> None:
    space, bundle = gratings
    torch.manual_seed(1)
    net = Supernet.from_space(space)
    with torch.no_grad():
        for p in net.routing.parameters():
            p.normal_(0, 2)
    derived = net.routing.derive()
    model = BranchedNet.from_space(derived.tree, space)
    model.load_state_dict(net.inherit(derived))
    net.eval(), model.eval()
    x = bundle.val.inputs[:6]
    ours = net(x, net.routing.sample(argmax=True))
    theirs = model(x)
    assert all(torch.allclose(ours[t], theirs[t], atol=1e-6) for t in space.task_names)


@pytest.mark.parametrize("name", BUILTINS)
def test_every_space_runs_a_sampled_step_without_nan(name: str) -> None:
    space, bundle = load_builtin(name)
    net = Supernet.from_space(space)
    out = net(bundle.train.inputs[:4], net.routing.sample(1.0))
    assert all(torch.isfinite(o).all() for o in out.values())
