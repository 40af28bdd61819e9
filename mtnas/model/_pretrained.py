"""Pretrained backbones: blocks that start from a local weights file (transfer learning).

``backbone.weights`` names a file; ``Supernet.from_space`` copies each layer's pretrained block
into every one of its K copies (all copies start equal, as after warm-up) and
``BranchedNet.from_space`` into the block of every group. Heads stay freshly initialised. Nothing
is downloaded: the file is local, and a relative path is read from the directory mtnas runs in.

Two key layouts (``backbone.weights_map``; default: detected from the keys):

``mtnas``
    ``layers.{l}.{name}``: the state dict of one block of layer ``l``, for every layer of the
    backbone, any backbone. :func:`save_backbone_weights` writes it, e.g. from a trained
    network: ``save_backbone_weights(path, [blocks[0] for blocks in net.layers])``.

``torchvision-resnet``
    A torchvision ResNet-18/34 state dict (basic blocks), onto the ``resnet`` backbone only.
    mtnas's ``resnet`` backbone has no stem: its layer 0 is a basic block that reads the image.
    So layer 0 stays fresh, and layers 1, 2, ... take torchvision's basic blocks in stage order::

    ===============================================  ===========================================
    torchvision keys                                 mtnas ``resnet`` backbone
    ===============================================  ===========================================
    ``conv1.*``, ``bn1.*`` (7x7/2 stem, max-pool)    not used: no stem; layer 0 stays fresh
    the n-th basic block in order ``layer1.0``,      layer n + 1 (``layer1.0`` -> layer 1, ...)
    ``layer1.1``, ..., ``layer2.0``, ..., ``layer4.*``
    ``layerS.B.conv1/bn1/conv2/bn2.*``               ``conv1/bn1/conv2/bn2.*`` of that layer
    ``layerS.B.downsample.0.*`` / ``.downsample.1.*``  ``shortcut.0.*`` / ``shortcut.1.*``
    ``fc.*``                                         not used: heads stay fresh
    ===============================================  ===========================================

    Supported exactly when mtnas layer ``l >= 1`` mirrors the ``(l-1)``-th torchvision block:
    the same channels in and out (so layer 0's channels equal ``layer1``'s, e.g. 64), stride 2 for
    the first block of ``layer2..layer4`` and 1 elsewhere. For ResNet-18: layer 0 with 64 channels
    (any stride), then channels/stride 64/1, 64/1, 128/2, 128/1, 256/2, 256/1, 512/2, 512/1
    (ResNet-34: 3, 4, 6, 3 blocks per stage). A backbone shorter than the file takes a
    prefix of its blocks (a truncated ResNet); a longer one, another channel count or stride, a
    missing or stray key (bottleneck blocks of ResNet-50+ included) is an error naming the layer.
    ``num_batches_tracked`` may be absent (old torchvision files).

``model``
    The state dict of the whole model a library backbone (``timm``, ``torchvision``) names
    (``model.state_dict()``, or the weights file the library publishes), onto it only: each
    layer's block holds its units under the model's own names, so it takes the file's keys of
    those units (``stages.1.blocks.0.conv_dw.weight``, ``cls_token``, ...). Keys of modules no
    layer holds (the classifier, stages after the last cut) are not used; a missing key or shape
    is an error naming the layer. Default for a library backbone unless the file is mtnas's own.

Files: ``.safetensors`` (any layout), or ``.pt``/``.pth`` read with
``torch.load(weights_only=True)`` (plain tensors only; pickled objects are refused).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from mtnas.core import MtnasError, atomic_write_bytes, first_few
from mtnas.model._checkpoint import WEIGHTS_FORMAT, fit_problems, read_safetensors, tensors_sha256, torch_load_checked
from mtnas.space import BackboneConfig

__all__ = [
    "BACKBONE_FORMAT",
    "WEIGHTS_MAPS",
    "load_pretrained",
    "read_backbone_weights",
    "save_backbone_weights",
]

BACKBONE_FORMAT = "mtnas-backbone"
BACKBONE_VERSION = "1"
WEIGHTS_MAPS = ("mtnas", "torchvision-resnet", "model")

_TV_BLOCK = re.compile(r"layer([1-4])\.(\d+)\.(.+)")
_TV_PARTS = ("conv1", "bn1", "conv2", "bn2", "downsample.0", "downsample.1")
_TV_UNUSED = ("conv1.", "bn1.", "fc.")  # the stem and the classifier: no counterpart (see the table)

State = dict[str, torch.Tensor]


def save_backbone_weights(path: str | Path, blocks: Sequence[nn.Module | Mapping[str, torch.Tensor]]) -> Path:
    """Write one block per backbone layer as ``layers.{l}.*`` safetensors, for ``backbone.weights``.

    Args:
        path: the ``.safetensors`` file to write (atomically).
        blocks: block ``l`` (or its state dict) for each layer ``l``, e.g.
            ``[blocks[0] for blocks in net.layers]`` of a ``BranchedNet`` or ``Supernet``.
    """
    from safetensors.torch import save

    tensors = {}
    for layer, block in enumerate(blocks):
        state = block.state_dict() if isinstance(block, nn.Module) else block
        for name, value in state.items():
            tensors[f"layers.{layer}.{name}"] = value.detach().cpu().contiguous()
    metadata = {"format": BACKBONE_FORMAT, "version": BACKBONE_VERSION, "layers": str(len(blocks)),
                "sha256": tensors_sha256(tensors)}
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def load_pretrained(layers: Sequence[Sequence[nn.Module]], backbone: BackboneConfig) -> list[int]:
    """Copy the blocks of ``backbone.weights`` into every copy of each layer's block.

    Args:
        layers: ``layers[l]``: the blocks of layer ``l`` (K supernet copies, or one per tree group).
        backbone: the config naming the file and its layout.

    Returns:
        The layers that were loaded (all, or all but layer 0 for a torchvision file).
    """
    states = read_backbone_weights(backbone, [blocks[0] for blocks in layers])
    for blocks, state in zip(layers, states):
        if state is not None:
            for block in blocks:
                block.load_state_dict(state, strict=True)
    return [layer for layer, state in enumerate(states) if state is not None]


def read_backbone_weights(backbone: BackboneConfig, reference: Sequence[nn.Module]) -> list[State | None]:
    """Per-layer block states from ``backbone.weights``, checked against one block per layer.

    Args:
        backbone: the config naming the file (``weights``) and its layout (``weights_map``).
        reference: a block of each layer; names and shapes must match it exactly.

    Returns:
        One state per layer, ``None`` where the layout leaves the layer fresh (torchvision: layer 0).

    Raises:
        MtnasError: the file is missing, unreadable or unsafe, or does not fit the backbone; the
            message names the file, the layer and the first offending keys.
    """
    if backbone.weights is None:
        raise ValueError("read_backbone_weights needs a backbone config with weights set")
    path = Path(backbone.weights)
    source = f"backbone.weights: {path}"
    if not path.exists():
        where = "" if path.is_absolute() else f" (a relative path is read from the directory mtnas runs in, {Path.cwd()})"
        raise MtnasError(f"{source}: no such file{where}")
    tensors, own = _read_tensors(path, source)
    layout = backbone.weights_map or ("mtnas" if own else "model" if backbone.model else _detect(tensors, source))
    if layout == "mtnas":
        return _mtnas_states(tensors, reference, source)
    if layout == "model":
        return _model_states(tensors, reference, source)
    if backbone.name != "resnet":
        raise MtnasError(
            f"{source}: a torchvision ResNet file loads only into the 'resnet' backbone, this one is {backbone.name!r}"
        )
    return _torchvision_states(tensors, reference, [cfg.stride for cfg in backbone.layers], source)


# --- reading files -----------------------------------------------------------------------------


def _read_tensors(path: Path, source: str) -> tuple[State, bool]:
    """The file's tensors, and whether it is mtnas's own backbone file (by its metadata)."""
    if path.suffix == ".safetensors":
        return _read_safetensors(path, source)
    data = torch_load_checked(path, source)
    if not isinstance(data, Mapping):
        raise MtnasError(f"{source}: expected a state dict (name -> tensor), got a {type(data).__name__}")
    bad = [str(k) for k, v in data.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        hint = " (a training checkpoint? save its model's state_dict() alone)" if {"state_dict", "model"} & set(bad) else ""
        raise MtnasError(f"{source}: not a state dict of tensors: {len(bad)} entry(ies) are not tensors ({first_few(bad)}){hint}")
    return dict(data), False


def _read_safetensors(path: Path, source: str) -> tuple[State, bool]:
    tensors, metadata = read_safetensors(path, source)
    if metadata.get("format") == WEIGHTS_FORMAT:
        raise MtnasError(
            f"{source}: this is a trained network's weights file (layers.{{l}}.{{group}}.* and heads), not a backbone; "
            "write one with mtnas.pretrained.save_backbone_weights(path, [blocks[0] for blocks in net.layers])"
        )
    expected = metadata.get("sha256") if metadata.get("format") == BACKBONE_FORMAT else None
    if expected is not None and tensors_sha256(tensors) != expected:
        raise MtnasError(f"{source}: tensors do not match their checksum: the file was modified or damaged")
    return tensors, metadata.get("format") == BACKBONE_FORMAT


def _detect(tensors: State, source: str) -> str:
    if tensors and all(k.startswith("layers.") for k in tensors):
        return "mtnas"
    if any(_TV_BLOCK.fullmatch(k) for k in tensors):
        return "torchvision-resnet"
    raise MtnasError(
        f"{source}: cannot tell the key layout (first keys: {first_few(sorted(tensors))}); expected 'layers.{{l}}.*' "
        "(mtnas) or a torchvision ResNet ('layer1.0.conv1.weight', ...); set backbone.weights_map"
    )


# --- the two layouts ---------------------------------------------------------------------------


def _mtnas_states(tensors: State, reference: Sequence[nn.Module], source: str) -> list[State | None]:
    per_layer: dict[int, State] = {}
    stray = []
    for key, value in tensors.items():
        prefix, _, rest = key.partition(".")
        index, _, name = rest.partition(".")
        if prefix != "layers" or not index.isdigit() or not name:
            stray.append(key)
        else:
            per_layer.setdefault(int(index), {})[name] = value
    if stray:
        raise MtnasError(f"{source}: {len(stray)} key(s) outside 'layers.{{l}}.*' ({first_few(stray)})")
    extra = sorted(set(per_layer) - set(range(len(reference))))
    absent = sorted(set(range(len(reference))) - set(per_layer))
    if extra or absent:
        found = f"layers {min(per_layer)}..{max(per_layer)}" if per_layer else "no layers"
        raise MtnasError(
            f"{source}: the file holds {found}, the backbone has layers 0..{len(reference) - 1} "
            f"(missing: {absent or 'none'}, extra: {extra or 'none'})"
        )
    return [_checked(per_layer[layer], block, f"layer {layer}", source) for layer, block in enumerate(reference)]


def _model_states(tensors: State, reference: Sequence[nn.Module], source: str) -> list[State | None]:
    """Each layer's keys out of a whole model's state dict (a library backbone's blocks use its names)."""
    states: list[State | None] = []
    for layer, block in enumerate(reference):
        own = block.state_dict()
        missing = [k for k in own if k not in tensors]
        if missing:
            raise MtnasError(f"{source}: layer {layer} needs {len(missing)} key(s) the file lacks ({first_few(missing)}); "
                             "is it the state dict of this model?")
        states.append(_checked({k: tensors[k] for k in own}, block, f"layer {layer}", source))
    return states


def _torchvision_states(
    tensors: State, reference: Sequence[nn.Module], strides: Sequence[int], source: str
) -> list[State | None]:
    blocks: dict[tuple[int, int], State] = {}
    stray, bottleneck = [], []
    for key, value in tensors.items():
        match = _TV_BLOCK.fullmatch(key)
        if match is None:
            if not key.startswith(_TV_UNUSED):
                stray.append(key)
            continue
        stage, block, name = int(match[1]), int(match[2]), match[3]
        if name.rpartition(".")[0] not in _TV_PARTS:
            (bottleneck if name.startswith(("conv3.", "bn3.")) else stray).append(key)
            continue
        blocks.setdefault((stage, block), {})[name.replace("downsample.", "shortcut.", 1)] = value
    if bottleneck:
        raise MtnasError(
            f"{source}: bottleneck blocks ({first_few(bottleneck)}) are not supported; use a basic-block ResNet (18 or 34)"
        )
    if stray:
        raise MtnasError(f"{source}: {len(stray)} key(s) that are not part of a torchvision ResNet ({first_few(stray)})")
    order = sorted(blocks)
    counts = {s: sum(1 for st, _ in order if st == s) for s in sorted({st for st, _ in order})}
    expected = [(s, b) for s, n in counts.items() for b in range(n)]
    if order != expected or list(counts) != list(range(1, len(counts) + 1)):
        raise MtnasError(f"{source}: torchvision blocks are not numbered layer1.0, layer1.1, ... in order: {_names(order)}")
    if len(reference) < 2:
        raise MtnasError(
            f"{source}: a torchvision ResNet loads into layers 1 and up (layer 0 reads the image); "
            "this backbone has one layer"
        )
    if len(reference) - 1 > len(order):
        raise MtnasError(
            f"{source}: layers 1..{len(reference) - 1} need {len(reference) - 1} torchvision basic blocks, "
            f"the file has {len(order)} ({', '.join(f'layer{s}: {n}' for s, n in counts.items())})"
        )
    states: list[State | None] = [None]
    for layer in range(1, len(reference)):
        stage, block = order[layer - 1]
        where = f"layer {layer} (torchvision layer{stage}.{block})"
        tv_stride = 2 if stage > 1 and block == 0 else 1
        if strides[layer] != tv_stride:
            raise MtnasError(f"{source}: {where}: the backbone has stride {strides[layer]}, torchvision has {tv_stride}")
        state = blocks[stage, block]
        own = reference[layer].state_dict()
        for name, value in own.items():  # old torchvision files predate BatchNorm's counter
            if name.endswith("num_batches_tracked") and name not in state:
                state[name] = value.clone()
        states.append(_checked(state, reference[layer], where, source))
    return states


def _checked(state: State, block: nn.Module, where: str, source: str) -> State:
    """``state`` when its names and shapes are exactly ``block``'s; else one error naming them."""
    problems = fit_problems(block.state_dict(), state)
    if problems:
        raise MtnasError(f"{source}: {where} does not fit the backbone's block: {'; '.join(problems)}")
    return state


def _names(order: Sequence[tuple[int, int]]) -> str:
    return first_few([f"layer{s}.{b}" for s, b in order], 8)
