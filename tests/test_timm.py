"""The ``timm`` backbone: a timm model cut at its stages (ResNet, ConvNeXt, EfficientNet/MobileNet,
ViT), the pieces checked against timm's own forward, fresh equal copies, a supernet step, a
searched tree exported and reloaded, costs, ONNX, pretrained weights (timm's loading from a cache
the test writes, a local file, offline without a cache) and the one line without timm installed.

Skips where timm is not installed locally; fails when CI=true (the test extra includes it).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from mtnas.cli import main
from mtnas.core import ConfigError, MtnasError
from mtnas.model import BranchedNet, count_params, load_model, save_weights, tree_cost
from mtnas.nn import TIMM_INSTALL, import_timm
from mtnas.nn import _timm as timm_backbone
from mtnas.search import Supernet, search_tree
from mtnas.space import SearchSpace, load_resolved, space_from_dict
from mtnas.tree import Architecture, BranchingTree

try:
    timm = import_timm()
    _MISSING = ""
except MtnasError as exc:
    timm, _MISSING = None, str(exc)

needs_timm = pytest.mark.skipif(
    timm is None and os.environ.get("CI") != "true", reason=f"timm is not installed ({_MISSING})"
)


@pytest.fixture(autouse=True)
def _timm_in_ci(request: pytest.FixtureRequest) -> None:
    if timm is None and os.environ.get("CI") == "true" and request.node.get_closest_marker("skipif") is not None:
        pytest.fail(f"CI=true but timm does not import: {_MISSING}")  # CI installs the test extra, which has it


#: one model per family, the tiny test models timm ships (and the smallest real ConvNeXt and MobileNet)
FAMILIES = {
    "test_resnet": ["act1", "layer1", "layer2", "layer3", "layer4"],
    "test_convnext": ["stem", "stages.0", "stages.1", "stages.2", "stages.3"],
    "convnext_atto": ["stem", "stages.0", "stages.1", "stages.2", "stages.3"],
    "test_efficientnet": ["bn1", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4"],
    "mobilenetv3_small_050": ["bn1", "blocks.0", "blocks.1", "blocks.3", "blocks.5"],
    "test_vit": ["patch_embed", "blocks.0", "blocks.2", "blocks.3", "blocks.5"],
}
TINY = ["test_resnet", "test_convnext", "test_efficientnet", "test_vit"]
TASKS = {"seg": ("dense_classification", 3, "conv", "cross_entropy", "miou"),
         "cls": ("classification", 4, "linear", "cross_entropy", "accuracy")}


def _space(model: str, shape: tuple[int, int, int] = (3, 32, 32), **backbone: Any) -> SearchSpace:
    tasks = [{"name": n, "kind": k, "num_outputs": o, "head": h, "loss": loss, "metrics": [m]}
             for n, (k, o, h, loss, m) in TASKS.items()]
    return space_from_dict({"dataset": {"name": "synth_scenes"}, "backbone": {"name": "timm", "model": model, **backbone},
                            "tasks": tasks, "routing": {"max_branches": 2}, "input_shape": list(shape)})


def _reference_model(model: str, shape: tuple[int, ...]) -> torch.nn.Module:
    """The model as timm builds it for this input (a ViT for its image size, not resized at run time)."""
    extra = {"img_size": shape[1:], "dynamic_img_size": False} if model.startswith("test_vit") else {}
    return timm.create_model(model, in_chans=shape[0], **extra).eval()


@needs_timm
@pytest.mark.parametrize("model", FAMILIES)
def test_default_cuts_are_the_stem_and_stages_and_reproduce_timms_intermediates(model: str) -> None:
    space = _space(model)
    assert [layer.end for layer in space.backbone.layers] == FAMILIES[model]  # written into the space
    plans = space.backbone.plan(space.input_shape)
    pieces = [p.make().eval() for p in plans]
    ref = _reference_model(model, space.input_shape)
    # every piece holds its units under timm's own names: together they load into the model
    state = {k: v for piece in pieces for k, v in piece.state_dict().items()}
    assert set(state) <= set(ref.state_dict())
    ref.load_state_dict(state, strict=False)
    x = torch.randn(2, *space.input_shape)
    with torch.no_grad():
        outs, y = [], x
        for plan, piece in zip(plans, pieces):
            assert tuple(y.shape[1:]) == plan.in_shape
            y = piece(y)
            assert tuple(y.shape[1:]) == plan.out_shape
            outs.append(y)
        n = len(ref.feature_info)
        theirs = ref.forward_intermediates(x, indices=list(range(n)), intermediates_only=True,
                                           **({"norm": True} if model == "test_vit" else {}))
    if model == "test_vit":  # timm's grids after the final norm: compare our last layer (all blocks, normed)
        torch.testing.assert_close(outs[-1], theirs[-1], atol=1e-5, rtol=1e-4)
        assert outs[1].shape == (2, 1 + 4, 64)  # between layers: the class token and the 2x2 patch tokens
    else:  # the layers at feature_info's modules give timm's feature maps
        ours = outs[len(outs) - n:]
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@needs_timm
def test_every_copy_is_a_fresh_module_with_the_same_weights() -> None:
    plan = _space("test_convnext").backbone.plan((3, 32, 32))[2]
    a, b = plan.make(), plan.make()
    assert a is not b and a.training and b.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    assert not torch.equal(next(a.parameters()), next(b.parameters()))  # no storage shared
    assert torch.equal(next(plan.make().parameters()), next(b.parameters()))  # the template is untouched


@needs_timm
@pytest.mark.parametrize("model", TINY)
def test_a_supernet_runs_forward_and_backward_through_every_copy(model: str) -> None:
    space = _space(model)
    net = Supernet.from_space(space)
    for blocks in net.layers:  # all K copies of a layer start equal (as after warm-up)
        assert len(blocks) == 2
        assert all(torch.equal(x, y) for x, y in zip(blocks[0].state_dict().values(), blocks[1].state_dict().values()))
    out = net.forward_soft(torch.randn(3, *space.input_shape), tau=1.0)
    assert out["seg"].shape == (3, 3, 32, 32) and out["cls"].shape == (3, 4)
    sum(o.float().square().mean() for o in out.values()).backward()
    for name, p in net.named_parameters():
        if not name.startswith("routing.") and p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def _scenes(model: str, **backbone: Any):
    data = {"dataset": {"name": "synth_scenes", "args": {"n_train": 48, "n_val": 16, "n_test": 16}},
            "backbone": {"name": "timm", "model": model, **backbone}, "tasks": ["segmentation", "depth", "count"],
            "routing": {"max_branches": 2}, "training": {"batch_size": 16},
            "search": {"epochs": 2, "warmup_epochs": 1}}
    return load_resolved(space_from_dict(data))


@needs_timm
@pytest.mark.parametrize("model", TINY)
def test_a_searched_tree_exports_reloads_and_gives_the_same_outputs(model: str, tmp_path: Path) -> None:
    space, bundle = _scenes(model)
    result = search_tree(space, bundle, seed=0)
    path = Architecture(result.tree, space.to_dict()).save(tmp_path / "arch.json")
    save_weights(tmp_path / "w.safetensors", dict(result.weights), tree_key=result.tree.key)
    arch = Architecture.load(path)
    backbone = arch.space["backbone"]
    assert (backbone["model"], backbone["library_version"]) == (model, timm.__version__)
    assert [layer["end"] for layer in backbone["layers"]] == FAMILIES[model]
    reloaded = load_model(path, tmp_path / "w.safetensors")
    searched = BranchedNet.from_space(result.tree, space)
    searched.load_state_dict(dict(result.weights))
    x = bundle.val.inputs[:4]
    with torch.no_grad():
        a, b = searched.eval()(x), reloaded(x)
    assert a.keys() == b.keys() == set(space.task_names)
    assert all(torch.equal(a[t], b[t]) for t in a)
    assert tree_cost(result.tree, space).params == count_params(reloaded)


@needs_timm
@pytest.mark.parametrize("model", ["test_resnet", "test_vit"])
def test_costs_count_the_models_own_parameters(model: str) -> None:
    space = _space(model)
    tasks = tuple(TASKS)
    shared = BranchedNet.from_space(BranchingTree.all_shared(tasks, space.num_layers), space)
    ref = _reference_model(model, space.input_shape)
    head_names = ("fc.", "head.", "fc_norm.")  # the classifier timm adds; mtnas's task heads replace it
    timm_backbone_params = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith(head_names))
    assert count_params(shared.layers) == timm_backbone_params
    split = BranchingTree.from_split_points(tasks, space.num_layers, {space.num_layers - 1: [(t,) for t in tasks]})
    last = count_params(shared.layers[-1])
    assert tree_cost(split, space).params == tree_cost(BranchingTree.all_shared(tasks, space.num_layers), space).params + last
    assert tree_cost(split, space).flops > tree_cost(BranchingTree.all_shared(tasks, space.num_layers), space).flops


@needs_timm
def test_cut_points_can_be_chosen_and_wrong_ones_are_one_clear_error() -> None:
    space = _space("test_resnet", layers=["act1", "layer2", {"end": "layer4"}])
    assert [p.out_shape for p in space.backbone.plan(space.input_shape)] == [(32, 16, 16), (48, 4, 4), (96, 1, 1)]
    with pytest.raises(ConfigError, match=r"backbone\.layers\[1\]: test_resnet has no cut point 'layer9' "
                                          r"\(did you mean 'layer4'\?\); its cut points, in order: conv1, bn1"):
        _space("test_resnet", layers=["act1", "layer9"])
    with pytest.raises(ConfigError, match=r"layers\[1\]: 'layer1' does not come after 'layer3'"):
        _space("test_resnet", layers=["layer3", "layer1"])
    with pytest.raises(ConfigError, match=r"backbone\.model: timm .* has no model 'convnext_atoo' \(did you mean 'convnext_atto'\?\)"):
        _space("convnext_atoo")
    with pytest.raises(ConfigError, match=r"backbone\.model: backbone 'timm' needs the name of a timm model"):
        space_from_dict({**yaml.safe_load("dataset: {name: synth_scenes}\ntasks: [count]"), "backbone": {"name": "timm"}})
    with pytest.raises(ConfigError, match=r"backbone\.model: backbone 'conv' builds its own blocks and takes no model"):
        space_from_dict({"dataset": {"name": "synth_scenes"}, "tasks": ["count"],
                         "backbone": {"name": "conv", "layers": [{"channels": 4}], "model": "resnet18"}})


@needs_timm
def test_a_model_that_does_not_fit_the_input_is_one_line_naming_the_cut() -> None:
    with pytest.raises(MtnasError, match=r"ConvNeXt does not run on inputs of shape \(1, 16, 16\) up to 'stages.3'.*cut it earlier"):
        _space("test_convnext", shape=(1, 16, 16))
    assert _space("test_convnext", shape=(1, 16, 16), layers=["stem", "stages.2"]).num_layers == 2


@needs_timm
@pytest.mark.parametrize("model", ["test_convnext", "test_vit"])
def test_onnx_export_of_a_timm_tree_gives_the_pytorch_outputs(model: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from mtnas.export import export_model

    space = _space(model)
    tree = BranchingTree.from_split_points(tuple(TASKS), space.num_layers, {3: [("seg",), ("cls",)]})
    path = Architecture(tree, space.to_dict()).save(tmp_path / "arch.json")
    net = BranchedNet.from_space(tree, space).eval()
    save_weights(tmp_path / "w.safetensors", net.state_dict(), tree_key=tree.key)
    report = export_model(path, tmp_path / "deploy", fmt="onnx", weights=tmp_path / "w.safetensors")
    x = torch.randn(3, *space.input_shape)
    session = ort.InferenceSession(str(report.files["onnx"]), providers=["CPUExecutionProvider"])
    got = dict(zip(tree.tasks, session.run(list(tree.tasks), {"input": x.numpy()})))
    with torch.no_grad():
        expected = net(x)
    for task in tree.tasks:
        torch.testing.assert_close(torch.from_numpy(got[task]), expected[task], atol=1e-4, rtol=1e-4)


@needs_timm
def test_a_rebuild_with_another_timm_version_warns() -> None:
    space = _space("test_resnet")
    old = replace(space, backbone=replace(space.backbone, library_version="0.0.1"))
    with pytest.warns(UserWarning, match=r"recorded with timm 0\.0\.1, timm .* is installed"):
        BranchedNet.from_space(BranchingTree.all_shared(tuple(TASKS), old.num_layers), old)


# --- pretrained weights -------------------------------------------------------------------------


@pytest.fixture
def fresh_models() -> None:
    """Forget the models built so far: a test that changes where weights come from builds anew."""
    timm_backbone._built.cache_clear()
    timm_backbone._cached_plan.cache_clear()
    yield
    timm_backbone._built.cache_clear()
    timm_backbone._cached_plan.cache_clear()


def _known_state(model: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(123)  # not timm's seed-0 init: recognisable
    ref = timm.create_model(model)
    with torch.no_grad():
        for value in ref.state_dict().values():
            if value.is_floating_point():
                value.add_(0.5)
    return {k: v.contiguous() for k, v in ref.state_dict().items()}


def _offline_hub_cache(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)  # never the network, in a test


def _assert_every_copy_holds(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for blocks in net.layers:
        for block in blocks:
            for key, value in block.state_dict().items():
                assert torch.equal(value, state[key]), key


@needs_timm
def test_pretrained_true_loads_timms_weights_into_every_copy(tmp_path: Path, monkeypatch, fresh_models) -> None:
    cfg = timm.models.get_pretrained_cfg("test_resnet")
    repo = tmp_path / ("models--" + cfg.hf_hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    state = _known_state("test_resnet")
    save_file(state, str(snapshot / "model.safetensors"))  # as the Hugging Face cache holds a download
    _offline_hub_cache(monkeypatch, tmp_path)
    space = _space("test_resnet", pretrained=True)
    net = Supernet.from_space(space)
    _assert_every_copy_holds(net, state)
    tree = BranchingTree.from_split_points(tuple(TASKS), space.num_layers, {1: [("seg",), ("cls",)]})
    _assert_every_copy_holds(BranchedNet.from_space(tree, space), state)


@needs_timm
def test_pretrained_offline_without_a_cache_is_one_line_saying_what_to_do(
    tmp_path: Path, monkeypatch, fresh_models, capsys
) -> None:
    _offline_hub_cache(monkeypatch, tmp_path / "empty")
    space = _space("test_resnet", pretrained=True)
    with pytest.raises(MtnasError, match=r"backbone\.pretrained: timm could not load the pretrained weights of "
                                         r"'test_resnet' .*offline, they must be in the Hugging Face cache"):
        BranchedNet.from_space(BranchingTree.all_shared(tuple(TASKS), space.num_layers), space)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": "synth_scenes", "args": {"n_train": 8, "n_val": 8, "n_test": 8}},
                                    "backbone": {"name": "timm", "model": "test_resnet", "pretrained": True},
                                    "tasks": ["count"]}))
    assert main(["train", str(path), "--tree", "all-shared", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "backbone.weights to a local .safetensors" in err


@needs_timm
def test_a_local_timm_state_dict_starts_every_copy_and_a_wrong_one_names_the_layer(tmp_path: Path) -> None:
    state = _known_state("test_convnext")
    save_file(state, str(tmp_path / "convnext.safetensors"))
    space = _space("test_convnext", weights=str(tmp_path / "convnext.safetensors"))
    _assert_every_copy_holds(Supernet.from_space(space), state)
    tree = BranchingTree.from_split_points(tuple(TASKS), space.num_layers, {2: [("seg",), ("cls",)]})
    _assert_every_copy_holds(BranchedNet.from_space(tree, space), state)
    del state["stages.2.blocks.0.conv_dw.weight"]
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(MtnasError, match=r"partial\.safetensors: layer 3 needs 1 key\(s\) the file lacks "
                                         r"\(stages\.2\.blocks\.0\.conv_dw\.weight\)"):
        Supernet.from_space(_space("test_convnext", weights=str(tmp_path / "partial.safetensors")))
    with pytest.raises(ConfigError, match=r"pretrained: give pretrained: true .* or backbone.weights .*, not both"):
        _space("test_convnext", pretrained=True, weights=str(tmp_path / "convnext.safetensors"))


# --- without timm -------------------------------------------------------------------------------


def test_naming_timm_without_it_installed_is_one_line_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now fails as if it were not installed
    with pytest.raises(ConfigError, match=rf"backbone\.name: backbone 'timm' needs the timm package \(timm is not "
                                          rf"installed\): {TIMM_INSTALL.replace('[', '.').replace(']', '.')}"):
        _space("convnext_atto")
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": "synth_scenes"}, "tasks": ["count"],
                                    "backbone": {"name": "timm", "model": "convnext_atto"}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing but the one line
        assert main(["search", str(path), "--runs-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and TIMM_INSTALL in err
