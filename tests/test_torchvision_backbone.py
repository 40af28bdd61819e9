"""The ``torchvision`` backbone: a torchvision ResNet cut at its stem and stages (the same cutter as
timm's models), its first convolution for other channel counts, a local state dict in every copy,
an arch.json round trip, and one line when its pretrained weights cannot be had.

Skips where torchvision is not installed locally; fails when CI=true (timm, in the test extra,
brings it).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from safetensors.torch import save_file

from mtnas.core import ConfigError, MtnasError
from mtnas.model import BranchedNet, count_params, load_model, save_weights
from mtnas.nn import _torchvision as tv_backbone
from mtnas.nn import import_torchvision
from mtnas.search import Supernet
from mtnas.space import SearchSpace, space_from_dict
from mtnas.tree import Architecture, BranchingTree

try:
    tv = import_torchvision()
except (ModuleNotFoundError, MtnasError) as exc:
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI=true but torchvision does not import: {exc}") from None
    pytest.skip(f"torchvision is not installed ({exc})", allow_module_level=True)

TASKS = ("seg", "cls")


def _space(model: str = "resnet18", shape: tuple[int, ...] = (3, 32, 32), **backbone) -> SearchSpace:
    tasks = [{"name": "seg", "kind": "dense_regression", "num_outputs": 1, "head": "conv", "loss": "l1", "metrics": ["abs_err"]},
             {"name": "cls", "kind": "classification", "num_outputs": 3, "head": "linear", "loss": "cross_entropy",
              "metrics": ["accuracy"]}]
    return space_from_dict({"dataset": {"name": "synth_scenes"}, "tasks": tasks, "routing": {"max_branches": 2},
                            "backbone": {"name": "torchvision", "model": model, **backbone}, "input_shape": list(shape)})


def test_a_resnet_is_cut_at_its_stem_and_stages_and_gives_torchvisions_features() -> None:
    from torchvision.models.feature_extraction import create_feature_extractor

    space = _space()
    assert [layer.end for layer in space.backbone.layers] == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert space.backbone.library_version is None  # recorded when resolved against a dataset
    pieces = [p.make().eval() for p in space.backbone.plan(space.input_shape)]
    ref = tv.models.resnet18().eval()
    state = {k: v for piece in pieces for k, v in piece.state_dict().items()}
    missing, unexpected = ref.load_state_dict(state, strict=False)  # the pieces hold torchvision's own keys
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    nodes = {name: name for name in ("relu", "layer1", "layer2", "layer3", "layer4")}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        theirs = create_feature_extractor(ref, return_nodes=nodes)(x)
        y = x
        for piece, name in zip(pieces, nodes):
            y = piece(y)
            torch.testing.assert_close(y, theirs[name], atol=1e-5, rtol=1e-4)
    all_shared = BranchedNet.from_space(BranchingTree.all_shared(TASKS, space.num_layers), space)
    assert count_params(all_shared.layers) == sum(p.numel() for n, p in ref.named_parameters() if not n.startswith("fc."))


def test_other_channel_counts_get_a_first_conv_that_sees_what_rgb_filters_see() -> None:
    conv = torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False)
    gray = torch.randn(2, 1, 16, 16)
    one = tv_backbone._first_conv(conv, 1)
    torch.testing.assert_close(one(gray), conv(gray.expand(-1, 3, -1, -1)))  # summed filters on a gray image
    assert tv_backbone._first_conv(conv, 5).weight.shape == (8, 5, 7, 7)
    space = _space(shape=(1, 32, 32))
    assert space.backbone.plan(space.input_shape)[0].make().conv1.in_channels == 1


def test_a_local_state_dict_starts_every_copy_and_the_tree_reloads_equal(tmp_path: Path) -> None:
    torch.manual_seed(7)
    state = {k: v + 0.25 if v.is_floating_point() else v for k, v in tv.models.resnet18().state_dict().items()}
    save_file(state, str(tmp_path / "r18.safetensors"))
    space = _space(weights=str(tmp_path / "r18.safetensors"))
    for blocks in Supernet.from_space(space).layers:
        for block in blocks:
            assert all(torch.equal(v, state[k]) for k, v in block.state_dict().items())
    tree = BranchingTree.from_split_points(TASKS, space.num_layers, {3: [("seg",), ("cls",)]})
    net = BranchedNet.from_space(tree, space).eval()
    path = Architecture(tree, space.to_dict()).save(tmp_path / "arch.json")
    save_weights(tmp_path / "w.safetensors", net.state_dict(), tree_key=tree.key)
    x = torch.randn(2, *space.input_shape)
    with torch.no_grad():
        a, b = net(x), load_model(path, tmp_path / "w.safetensors")(x)
    assert all(torch.equal(a[t], b[t]) for t in TASKS)


def test_pretrained_weights_that_cannot_be_had_and_wrong_models_are_one_line(monkeypatch, tmp_path: Path) -> None:
    import torch.hub

    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    tv_backbone._built.cache_clear()
    tv_backbone._cached_plan.cache_clear()
    space = _space(pretrained=True)
    with pytest.raises(MtnasError, match=r"backbone\.pretrained: torchvision could not load the pretrained weights of "
                                         r"'resnet18' \(URLError: .*offline, they must be in torch's hub cache"):
        Supernet.from_space(space)
    with pytest.raises(ConfigError, match=r"backbone\.model: backbone 'torchvision' cuts torchvision's ResNets, "
                                          r"'mobilenet_v3_small' is a MobileNetV3; use backbone 'timm'"):
        _space("mobilenet_v3_small")
    with pytest.raises(ConfigError, match=r"backbone\.model: torchvision .* has no model 'resnet19' \(did you mean"):
        _space("resnet19")
