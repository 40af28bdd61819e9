"""Pretrained backbones: file values reach every supernet copy and tree group, heads stay fresh;
the torchvision ResNet mapping; every bad file is one MtnasError naming the file and the layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mtnas.core import ConfigError, MtnasError
from mtnas.model import BranchedNet, arch_space, save_backbone_weights
from mtnas.search import Supernet
from mtnas.space import SearchSpace, space_from_dict
from mtnas.tree import Architecture, BranchingTree

TASKS = ("a", "b", "c")
CONV_LAYERS = [{"channels": 4, "stride": 1}, {"channels": 6, "stride": 2}, {"channels": 8, "stride": 1}]
# layer 0 reads the image; layers 1.. mirror a torchvision ResNet with stages 4, 8, 16, 32 channels
# and blocks (2, 1, 1, 1): layer1.0, layer1.1, layer2.0/2, layer3.0/2, layer4.0/2.
RESNET_LAYERS = [{"channels": 4, "stride": 1}, {"channels": 4}, {"channels": 4},
                 {"channels": 8, "stride": 2}, {"channels": 16, "stride": 2}, {"channels": 32, "stride": 2}]


def _space(layers: list[dict[str, Any]], name: str = "conv", **backbone: Any) -> SearchSpace:
    task = {"kind": "classification", "num_outputs": 3, "head": "linear", "loss": "cross_entropy", "metrics": ["accuracy"]}
    return space_from_dict({
        "dataset": {"name": "digit_gratings"},
        "backbone": {"name": name, "layers": layers, **backbone},
        "tasks": [{"name": t, **task} for t in TASKS],
        "routing": {"max_branches": 2},
        "input_shape": [3, 8, 8],
    })


def _tree(num_layers: int) -> BranchingTree:
    return BranchingTree.from_split_points(TASKS, num_layers, {1: [("a",), ("b", "c")], 2: [(t,) for t in TASKS]})


def _known_backbone(path: Path, space: SearchSpace) -> dict[str, torch.Tensor]:
    """Write a backbone file of recognisable values (not an init) and return its tensors."""
    gen = torch.Generator().manual_seed(123)
    blocks = [blocks[0] for blocks in BranchedNet.from_space(_tree(space.num_layers), space).layers]
    with torch.no_grad():
        for layer, block in enumerate(blocks):
            for value in block.state_dict().values():
                if value.is_floating_point():
                    value.copy_(torch.randn(value.shape, generator=gen) + 10 * (layer + 1))
    save_backbone_weights(path, blocks)
    return load_file(str(path))


def _assert_blocks_equal(block: nn.Module, file: dict[str, torch.Tensor], prefix: str) -> None:
    state = block.state_dict()
    assert set(state) == {k[len(prefix):] for k in file if k.startswith(prefix)}
    for name, value in state.items():
        assert torch.equal(value, file[prefix + name]), prefix + name


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- mtnas layout -------------------------------------------------------------------------------


def test_every_supernet_copy_starts_from_the_file_and_heads_stay_fresh(tmp_path: Path) -> None:
    path = tmp_path / "backbone.safetensors"
    file = _known_backbone(path, _space(CONV_LAYERS))
    space = _space(CONV_LAYERS, weights=str(path))
    torch.manual_seed(0)
    net = Supernet.from_space(space)
    torch.manual_seed(0)
    fresh = Supernet.from_space(space, pretrained=False)
    assert all(len(blocks) == 2 for blocks in net.layers)
    for layer, blocks in enumerate(net.layers):
        for block in blocks:
            _assert_blocks_equal(block, file, f"layers.{layer}.")
    assert not torch.equal(fresh.layers[0][0].state_dict()["0.weight"], file["layers.0.0.weight"])
    assert _same_state(net.heads, fresh.heads)  # same seed: the file changed no head's init
    head_weight = net.heads["a"].state_dict()
    assert all(not torch.equal(v, t) for v in head_weight.values() for t in file.values() if v.shape == t.shape)
    out = net.forward_soft(torch.randn(2, 3, 8, 8))
    assert all(torch.isfinite(o).all() for o in out.values())


def test_every_group_of_a_branched_net_starts_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "backbone.safetensors"
    file = _known_backbone(path, _space(CONV_LAYERS))
    space, tree = _space(CONV_LAYERS, weights=str(path), weights_map="mtnas"), _tree(3)
    torch.manual_seed(1)
    model = BranchedNet.from_space(tree, space)
    torch.manual_seed(1)
    fresh = BranchedNet.from_space(tree, space, pretrained=False)
    assert [len(blocks) for blocks in model.layers] == [1, 2, 3]
    for layer, blocks in enumerate(model.layers):
        for block in blocks:
            _assert_blocks_equal(block, file, f"layers.{layer}.")
    assert _same_state(model.heads, fresh.heads)
    assert not _same_state(model.layers, fresh.layers)


def test_a_trained_networks_backbone_is_reusable_and_arch_json_keeps_the_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative path is read from the directory mtnas runs in
    trained = BranchedNet.from_space(_tree(3), _space(CONV_LAYERS))
    save_backbone_weights("mine.safetensors", [blocks[0] for blocks in trained.layers])
    space = _space(CONV_LAYERS, weights="mine.safetensors")
    arch = Architecture(tree=BranchingTree.all_shared(TASKS, 3), space=space.to_dict())
    arch.save(tmp_path / "arch.json")
    rebuilt_space = arch_space(Architecture.load(tmp_path / "arch.json"))
    assert rebuilt_space == space and rebuilt_space.backbone.weights == "mine.safetensors"
    model = BranchedNet.from_space(arch.tree, rebuilt_space)
    for layer, blocks in enumerate(model.layers):
        assert _same_state(blocks[0], trained.layers[layer][0])


# --- torchvision layout -------------------------------------------------------------------------


class _TvBasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock's parameter layout (torchvision is not a dependency)."""

    def __init__(self, c_in: int, c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        if stride != 1 or c_in != c:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c))


class _TvResNet(nn.Module):
    """torchvision.models.ResNet's key names: conv1, bn1, layer1..layer4, fc."""

    def __init__(self, blocks: tuple[int, ...] = (2, 1, 1, 1), widths: tuple[int, ...] = (4, 8, 16, 32)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        c_in = widths[0]
        for stage, (n, c) in enumerate(zip(blocks, widths), start=1):
            stride = 1 if stage == 1 else 2
            layers = [_TvBasicBlock(c_in if b == 0 else c, c, stride if b == 0 else 1) for b in range(n)]
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
            c_in = c
        self.fc = nn.Linear(widths[-1], 10)


def _tv_state(**kwargs: Any) -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    state = _TvResNet(**kwargs).state_dict()
    for value in state.values():
        if value.is_floating_point():
            value.copy_(torch.randn(value.shape) + 5)  # not what a fresh block holds (BN: ones, zeros)
    return state


# (mtnas layer, torchvision block) of RESNET_LAYERS on _TvResNet((2, 1, 1, 1))
TV_TABLE = [(1, "layer1.0"), (2, "layer1.1"), (3, "layer2.0"), (4, "layer3.0"), (5, "layer4.0")]


def _assert_torchvision_loaded(model: BranchedNet, tv: dict[str, torch.Tensor], table=TV_TABLE) -> None:
    for layer, prefix in table:
        state = model.layers[layer][0].state_dict()
        expected = {k[len(prefix) + 1:].replace("downsample.", "shortcut."): v for k, v in tv.items()
                    if k.startswith(prefix + ".")}
        assert set(expected) <= set(state)
        for name, value in expected.items():
            for block in model.layers[layer]:
                assert torch.equal(block.state_dict()[name], value), (layer, name)


def test_a_torchvision_state_dict_maps_block_by_block_onto_the_resnet_layers(tmp_path: Path) -> None:
    tv = _tv_state()
    torch.save(tv, tmp_path / "r.pth")
    space, tree = _space(RESNET_LAYERS, "resnet", weights=str(tmp_path / "r.pth")), _tree(6)
    torch.manual_seed(2)
    model = BranchedNet.from_space(tree, space)
    torch.manual_seed(2)
    fresh = BranchedNet.from_space(tree, space, pretrained=False)
    _assert_torchvision_loaded(model, tv)
    assert "shortcut.0.weight" in model.layers[3][0].state_dict()  # layer2.0.downsample arrived
    assert _same_state(model.layers[0], fresh.layers[0])  # no stem in mtnas: layer 0 stays fresh
    assert _same_state(model.heads, fresh.heads)
    out = model(torch.randn(2, 3, 8, 8))
    assert all(torch.isfinite(o).all() for o in out.values())


def test_torchvision_keys_in_safetensors_without_bn_counters_and_a_truncated_backbone(tmp_path: Path) -> None:
    tv = {k: v for k, v in _tv_state().items() if not k.endswith("num_batches_tracked")}  # as old torchvision files
    save_file(tv, str(tmp_path / "r.safetensors"))
    space = _space(RESNET_LAYERS[:4], "resnet", weights=str(tmp_path / "r.safetensors"))  # layers 1-3 only
    net = Supernet.from_space(space)
    for layer, prefix in TV_TABLE[:3]:
        for block in net.layers[layer]:
            assert torch.equal(block.bn2.running_var, tv[f"{prefix}.bn2.running_var"])
            assert torch.equal(block.conv1.weight, tv[f"{prefix}.conv1.weight"])


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        # layer 3 with 12 channels where torchvision's layer2.0 has 8: its shapes are named
        ([*RESNET_LAYERS[:3], {"channels": 12, "stride": 2}], r"layer 3 \(torchvision layer2\.0\).*conv1\.weight: expected \(12, 4, 3, 3\), found \(8, 4, 3, 3\)"),
        ([*RESNET_LAYERS[:3], {"channels": 8, "stride": 1}], r"layer 3 \(torchvision layer2\.0\): the backbone has stride 1, torchvision has 2"),
        ([{"channels": 8, "stride": 1}, *RESNET_LAYERS[1:]], r"layer 1 \(torchvision layer1\.0\).*conv1\.weight: expected \(4, 8, 3, 3\), found \(4, 4, 3, 3\)"),
        ([*RESNET_LAYERS, {"channels": 32}], r"layers 1\.\.6 need 6 torchvision basic blocks, the file has 5"),
    ],
)
def test_a_resnet_that_does_not_mirror_the_file_is_one_error_naming_the_layer(tmp_path: Path, layers, match) -> None:
    torch.save(_tv_state(), tmp_path / "r.pth")
    space = _space(layers, "resnet", weights=str(tmp_path / "r.pth"))
    with pytest.raises(MtnasError, match=rf"backbone\.weights: {tmp_path}/r\.pth: {match}"):
        Supernet.from_space(space)


class _NotATensor:
    pass


def test_unsafe_or_unfit_files_are_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    def fails(path: Path, match: str, layers=RESNET_LAYERS, name: str = "resnet", **backbone: Any) -> None:
        space = _space(layers, name, weights=str(path), **backbone)
        with pytest.raises(MtnasError, match=match):
            BranchedNet.from_space(_tree(len(layers)), space)

    tv = _tv_state()
    torch.save({**tv, "meta": _NotATensor()}, tmp_path / "pickled.pth")
    fails(tmp_path / "pickled.pth", r"pickled\.pth: refused: it pickles a tests\.test_pretrained\._NotATensor object, "
          r"and \.pt/\.pth files are read with torch\.load\(weights_only=True\), tensors only")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    fails(tmp_path / "junk.pth", r"junk\.pth: damaged, or not a torch\.save file of tensors")
    torch.save({**tv, "epoch": 3}, tmp_path / "epoch.pth")
    fails(tmp_path / "epoch.pth", r"not a state dict of tensors: 1 entry\(ies\) are not tensors \(epoch\)")
    torch.save({**tv, "layer1.0.conv3.weight": torch.zeros(1)}, tmp_path / "bottleneck.pth")
    fails(tmp_path / "bottleneck.pth", r"bottleneck blocks \(layer1\.0\.conv3\.weight\) are not supported")
    torch.save(tv, tmp_path / "r.pth")
    fails(tmp_path / "r.pth", r"loads only into the 'resnet' backbone, this one is 'conv'", CONV_LAYERS, "conv")

    monkeypatch.chdir(tmp_path)
    with pytest.raises(MtnasError, match=r"^backbone\.weights: gone\.safetensors: no such file \(a relative path is read "
                       rf"from the directory mtnas runs in, {tmp_path}\)$"):
        Supernet.from_space(_space(CONV_LAYERS, weights="gone.safetensors"))

    file = _known_backbone(tmp_path / "b.safetensors", _space(CONV_LAYERS))
    save_file({k: v for k, v in file.items() if not k.startswith("layers.2.")}, str(tmp_path / "short.safetensors"))
    fails(tmp_path / "short.safetensors", r"short\.safetensors: the file holds layers 0\.\.1, the backbone has layers "
          r"0\.\.2 \(missing: \[2\], extra: none\)", CONV_LAYERS, "conv")
    wide = [*CONV_LAYERS[:2], {"channels": 9}]
    fails(tmp_path / "b.safetensors", r"b\.safetensors: layer 2 does not fit the backbone's block: 5 shape mismatch"
          r"\(es\) \(0\.weight: expected \(9, 6, 3, 3\), found \(8, 6, 3, 3\)", wide, "conv")
    save_file({**file, "layers.0.extra": torch.zeros(1)}, str(tmp_path / "extra.safetensors"))
    fails(tmp_path / "extra.safetensors", r"layer 0 does not fit .* 1 unexpected tensor\(s\) \(extra\)", CONV_LAYERS, "conv")
    save_file({"stem.weight": torch.zeros(1)}, str(tmp_path / "odd.safetensors"))
    fails(tmp_path / "odd.safetensors", r"cannot tell the key layout \(first keys: stem\.weight\)", CONV_LAYERS, "conv")
    (tmp_path / "torn.safetensors").write_bytes((tmp_path / "b.safetensors").read_bytes()[:100])
    fails(tmp_path / "torn.safetensors", r"damaged or truncated safetensors file", CONV_LAYERS, "conv")


def test_a_trained_networks_weights_file_is_not_taken_for_a_backbone(tmp_path: Path) -> None:
    from mtnas.model import save_weights

    tree, space = _tree(3), _space(CONV_LAYERS)
    save_weights(tmp_path / "weights.safetensors", BranchedNet.from_space(tree, space).state_dict(), tree_key=tree.key)
    with pytest.raises(MtnasError, match=r"trained network's weights file .*, not a backbone; write one with mtnas\.pretrained\.save_backbone_weights"):
        Supernet.from_space(_space(CONV_LAYERS, weights=str(tmp_path / "weights.safetensors")))


@pytest.mark.parametrize(
    ("backbone", "match"),
    [
        ({"weights": "w.bin"}, r"backbone\.weights: expected a \.safetensors, \.pt, \.pth file, got 'w\.bin'"),
        ({"weights_map": "mtnas"}, r"backbone\.weights_map: 'mtnas' is set but backbone\.weights is not"),
        ({"weights": "r.pth", "weights_map": "torchvision-resnet"}, r"backbone\.weights_map: 'torchvision-resnet' loads only"),
    ],
)
def test_weights_keys_are_checked_when_the_space_is_parsed(backbone: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _space(CONV_LAYERS, **backbone)


class _RunsACommand:
    """What a hostile .pt holds: unpickling it would call os.system."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_pickled_blocked_global_is_refused_for_what_it_is_and_nothing_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, recwarn: pytest.WarningsRecorder
) -> None:
    import pickle

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"layer1.0.conv1.weight": _RunsACommand()}, path)
        expected = r"evil\.pt: refused: it pickles a (posix|nt)\.system object"
    else:  # a plain pickle (protocol 4): torch warns about the protocol, then cannot read it
        path.write_bytes(pickle.dumps({"w": _RunsACommand()}, protocol=4))
        expected = r"evil\.pt: damaged, or not a torch\.save file of tensors"
    with pytest.raises(MtnasError, match=expected) as err:
        BranchedNet.from_space(_tree(len(RESNET_LAYERS)), _space(RESNET_LAYERS, "resnet", weights=str(path)))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "pwned.txt").exists()
    assert [str(w.message) for w in recwarn] == []  # no torch warning beside the one-line error


def test_a_hostile_backbone_file_on_the_cli_is_one_line_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capfd: pytest.CaptureFixture) -> None:
    import pickle

    import yaml

    from mtnas.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": _RunsACommand()}, protocol=4))
    torch.save({"w": _RunsACommand()}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        space = {"dataset": {"name": "digit_gratings", "args": {"n_train": 8, "n_val": 8, "n_test": 8}},
                 "backbone": {"name": "conv", "layers": [{"channels": 4}], "weights": name},
                 "tasks": ["digit"], "training": {"epochs": 1}}
        (tmp_path / "s.yaml").write_text(yaml.safe_dump(space))
        assert main(["train", "s.yaml", "--epochs", "1", "--quiet"]) == 2
        err = capfd.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"mtnas: error: backbone.weights: {name}: "), err
    assert not (tmp_path / "pwned.txt").exists()
