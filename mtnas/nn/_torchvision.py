"""torchvision: its import beside a CPU build of torch, and the built-in ``torchvision`` backbone.

**The import.** A torchvision wheel built for CUDA beside a CPU build of torch (pip pairs them when
torch came from the CPU index and torchvision from PyPI) cannot load its compiled operators.
torchvision is made to run without them (its detection ops such as ``nms`` then raise when
called), but its import stops at ``operator torchvision::nms does not exist``: it registers fake
kernels of two operators without checking that they loaded. :func:`import_torchvision` then
declares those two operators' schemas, with no kernel, and imports it again, so torchvision runs as
it is designed to degrade; no image model calls those operators.

**The backbone.** ``backbone: {name: torchvision, model: resnet18, pretrained: false}`` cuts one of
torchvision's ResNets (``resnet18`` .. ``resnet152``, ``resnext*``, ``wide_resnet*``) at its stem
(``relu``) and its stages ``layer1`` .. ``layer4``, as the ``timm`` backbone cuts timm's ResNets
(see ``mtnas.nn._model_cut``); ``layers:`` chooses other cut points. ``pretrained: true`` is
torchvision's own loading of its default weights (torch's hub cache, or a download). Inputs of
other than 3 channels get a first convolution of that many channels; pretrained, it starts from the
RGB filters summed (1 channel) or repeated and rescaled. Needs torchvision (``mtnas[torchvision]``).
"""

from __future__ import annotations

import functools
import math
import re
import sys
from types import ModuleType
from typing import Any

import torch
from torch import nn

from mtnas.core import MtnasError, did_you_mean, first_line, short_repr
from mtnas.nn._backbone_types import BackboneType, BlockPlan, ModelLibrary, ModelSource
from mtnas.nn._model_cut import ModelLayer, checked_cuts, piece_plans, warn_version

__all__ = ["TORCHVISION_BACKBONE", "TORCHVISION_INSTALL", "import_torchvision", "torchvision_version"]

TORCHVISION_INSTALL = "pip install 'mtnas[torchvision]'"

#: torchvision operators whose fake kernels its import registers unconditionally, with their schemas.
_OPERATORS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_MISSING_OP = re.compile(r"operator torchvision::(\w+) does not exist")
_declared: dict[str, torch.library.Library] = {}  # kept alive: a Library drops its definitions when collected
#: a ResNet's stem and stages, as timm's ResNets name them in their feature_info
_RESNET_STAGES = ("relu", "layer1", "layer2", "layer3", "layer4")


def import_torchvision() -> ModuleType:
    """The ``torchvision`` module, imported even where its compiled operators cannot load.

    Raises:
        ModuleNotFoundError: torchvision is not installed.
        MtnasError: it fails to import for another reason (one line: what it said, what to do).
    """
    for _ in range(len(_OPERATORS) + 1):
        if sys.modules.get("torchvision") is not None:
            return sys.modules["torchvision"]
        try:
            import torchvision

            return torchvision
        except RuntimeError as exc:
            match = _MISSING_OP.search(str(exc))
            if match is None or match[1] not in _OPERATORS or match[1] in _declared:
                raise MtnasError(f"torchvision does not import: {first_line(exc)[:300]}; install the torchvision "
                                 f"that matches torch {torch.__version__}") from None
            _declared[match[1]] = lib = torch.library.Library("torchvision", "FRAGMENT")
            lib.define(_OPERATORS[match[1]])
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]  # import it afresh, not half of it
    raise MtnasError("torchvision does not import beside this torch")  # pragma: no cover


def _torchvision() -> ModuleType:
    try:
        return import_torchvision()
    except ModuleNotFoundError:
        raise MtnasError(f"backbone 'torchvision' needs the torchvision package: {TORCHVISION_INSTALL}") from None


def torchvision_version() -> str:
    """The installed torchvision's version (an ``MtnasError`` with the install hint without it)."""
    return str(_torchvision().__version__)


def _create(model: str, **kwargs: Any) -> nn.Module:
    tv = _torchvision()
    names = tv.models.list_models(module=tv.models)
    if model not in names:
        raise MtnasError(f"model: torchvision {tv.__version__} has no model {short_repr(model)}"
                         f"{did_you_mean(model, names)}; its ResNets: resnet18, resnet34, resnet50, ...")
    try:
        net = tv.models.get_model(model, **kwargs)
    except Exception as exc:  # torchvision's or the download's own error: say which model and what it said
        raise MtnasError(
            f"backbone.pretrained: torchvision could not load the pretrained weights of {model!r} ({type(exc).__name__}: "
            f"{first_line(exc)[:300]}); offline, they must be in torch's hub cache (TORCH_HOME): run once with "
            "network access, or set pretrained: false and backbone.weights to a local file of the model's state dict"
        ) from None
    if not isinstance(net, tv.models.ResNet):
        raise MtnasError(f"model: backbone 'torchvision' cuts torchvision's ResNets, {model!r} is a "
                         f"{type(net).__name__}; use backbone 'timm' for other models")
    net.feature_info = [{"module": m} for m in _RESNET_STAGES]  # where the cutter finds the stages
    return net


@functools.lru_cache(maxsize=8)
def _skeleton(model: str) -> nn.Module:
    with torch.device("meta"):
        return _create(model, weights=None)


def _first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """``conv`` for ``in_chans`` input channels: RGB filters summed (1) or repeated and rescaled."""
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        w = conv.weight
        if in_chans == 1:
            new.weight.copy_(w.sum(dim=1, keepdim=True))
        else:
            new.weight.copy_(w.repeat(1, math.ceil(in_chans / 3), 1, 1)[:, :in_chans] * (3 / in_chans))
    return new


@functools.lru_cache(maxsize=4)
def _built(model: str, pretrained: bool, in_chans: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same initial weights in every process
        net = _create(model, weights="DEFAULT" if pretrained else None)
        if in_chans != 3:
            net.conv1 = _first_conv(net.conv1, in_chans)
    return net.eval()


def _layers(model: str, given: tuple[ModelLayer, ...]) -> tuple[ModelLayer, ...]:
    return checked_cuts(model, _skeleton(model), given)


def _plan(layers: tuple[ModelLayer, ...], input_shape: tuple[int, ...], source: ModelSource) -> list[BlockPlan]:
    if len(input_shape) != 3:
        raise MtnasError(f"backbone 'torchvision' needs image inputs (C, H, W), the dataset gives shape {input_shape}")
    warn_version("torchvision", source.model, source.version, torchvision_version())
    return list(_cached_plan(tuple(layers), tuple(input_shape), source.model, source.pretrained))


@functools.lru_cache(maxsize=16)
def _cached_plan(layers: tuple[ModelLayer, ...], input_shape: tuple[int, ...], model: str,
                 pretrained: bool) -> tuple[BlockPlan, ...]:
    return piece_plans(_built(model, pretrained, input_shape[0]), [layer.end for layer in layers], input_shape)


#: The ``torchvision`` backbone (registered by ``mtnas.nn._backbones``).
TORCHVISION_BACKBONE = BackboneType(
    ModelLayer, _plan, "a torchvision ResNet (backbone.model) cut at its stages; needs torchvision",
    library=ModelLibrary("torchvision", torchvision_version, _layers),
)
