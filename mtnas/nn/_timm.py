"""The built-in ``timm`` backbone: a model of PyTorch Image Models (timm) cut into searched layers.

``backbone: {name: timm, model: convnext_atto, pretrained: false, layers: [stem, stages.1, stages.3]}``
builds the model with ``timm.create_model`` (``in_chans`` and, for a vision transformer,
``img_size`` from the dataset's input shape), reads it as consecutive units and cuts it after each
unit ``layers`` names (default: the stem and each stage; see ``mtnas.nn._model_cut``). Each
layer's ``make()`` returns a fresh copy of its piece of that one model, so every supernet copy
and every tree group starts from the same weights: timm's pretrained ones with ``pretrained:
true`` (timm's own loading: the Hugging Face cache, or a download), else timm's initialisation
drawn under seed 0 (the same in every process). The model is built once per process and kept.

timm is an optional dependency (``pip install 'mtnas[timm]'``), imported only when a space names
this backbone. timm imports torchvision; a torchvision wheel built for CUDA beside a CPU build of
torch cannot load its compiled operators and then stops importing at ``operator torchvision::nms
does not exist``, although it is made to run without them (its compiled detection ops raise when
called; no timm model calls them). :func:`import_timm` then declares those two operators' schemas,
with no kernel, and imports it again: a broken torchvision is used as it is designed to degrade.
"""

from __future__ import annotations

import copy
import functools
import re
import sys
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import torch
from torch import nn

from mtnas.core import MtnasError, did_you_mean, first_line, short_repr
from mtnas.nn._backbones import BACKBONES, BackboneType, BlockPlan, ModelLibrary, ModelSource
from mtnas.nn._model_cut import cut_model, default_cuts, model_units, reads_tokens

__all__ = ["TIMM_INSTALL", "TimmLayer", "import_timm", "timm_version"]

TIMM_INSTALL = "pip install 'mtnas[timm]'"

#: torchvision operators whose fake kernels its import registers unconditionally, with their schemas.
_TORCHVISION_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_MISSING_OP = re.compile(r"operator torchvision::(\w+) does not exist")
_declared: dict[str, torch.library.Library] = {}  # kept alive: a Library drops its definitions when collected


@dataclass(frozen=True)
class TimmLayer:
    """One layer of a timm model: its units up to and including ``end`` (a cut point such as
    ``stages.1``, ``layer2`` or ``blocks.5``); a plain string in YAML is this name."""

    _shorthand: ClassVar[str] = "end"

    end: str


def import_timm() -> ModuleType:
    """The ``timm`` module.

    Raises:
        MtnasError: timm (or a package it needs) is not installed: one line with the install hint.
    """
    if sys.modules.get("timm") is not None:
        return sys.modules["timm"]
    try:
        _import_torchvision()
        import timm
    except ModuleNotFoundError as exc:
        missing = exc.name or "timm"
        raise MtnasError(f"backbone 'timm' needs the timm package ({missing} is not installed): {TIMM_INSTALL}") from None
    return timm


def _import_torchvision() -> None:
    """Import torchvision, declaring the operators a CUDA build cannot load beside a CPU torch."""
    for _ in range(len(_TORCHVISION_OPS) + 1):
        try:
            import torchvision  # noqa: F401
            return
        except RuntimeError as exc:
            match = _MISSING_OP.search(str(exc))
            if match is None or match[1] not in _TORCHVISION_OPS or match[1] in _declared:
                raise MtnasError(f"torchvision, which timm imports, does not import: {first_line(exc)}; install the "
                                 f"torchvision that matches torch {torch.__version__}") from None
            _declared[match[1]] = lib = torch.library.Library("torchvision", "FRAGMENT")
            lib.define(_TORCHVISION_OPS[match[1]])
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]  # import it afresh, not half of it
    raise MtnasError("torchvision, which timm imports, does not import beside this torch")  # pragma: no cover


def timm_version() -> str:
    """The installed timm's version (raises ``MtnasError`` with the install hint without timm)."""
    return str(import_timm().__version__)


def _create(timm: ModuleType, model: str, **kwargs: Any) -> nn.Module:
    if not timm.is_model(model):
        names = timm.list_models()
        raise MtnasError(f"model: timm {timm.__version__} has no model {short_repr(model)}{did_you_mean(model, names)}; "
                         "timm.list_models('pattern*') lists them")
    try:
        return timm.create_model(model, **kwargs)
    except Exception as exc:  # timm's or the hub's own error: say which model and what it said
        if kwargs.get("pretrained"):
            raise MtnasError(
                f"backbone.pretrained: timm could not load the pretrained weights of {model!r} ({type(exc).__name__}: "
                f"{first_line(exc)[:300]}); offline, they must be in the Hugging Face cache (HF_HOME): run once "
                "with network access, or set pretrained: false and backbone.weights to a local .safetensors "
                "file of the model's state dict"
            ) from None
        raise MtnasError(f"model: timm could not build {model!r}: {type(exc).__name__}: {first_line(exc)[:300]}") from None


@functools.lru_cache(maxsize=8)
def _skeleton(model: str) -> nn.Module:
    """``model``'s structure (on the meta device: no memory, no weights) for its cut points."""
    with torch.device("meta"):
        return _create(import_timm(), model, pretrained=False)


@functools.lru_cache(maxsize=4)
def _built(model: str, pretrained: bool, in_chans: int, img_size: tuple[int, int]) -> nn.Module:
    """``model`` with real weights, for inputs of ``in_chans`` channels (and ``img_size`` for a
    vision transformer); timm's initialisation is drawn under seed 0 without touching the global
    random state."""
    extra: dict[str, Any] = {"img_size": img_size, "dynamic_img_size": False} if reads_tokens(_skeleton(model)) else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _create(import_timm(), model, pretrained=pretrained, in_chans=in_chans, **extra).eval()


def _layers(model: str, given: tuple[Any, ...]) -> tuple[TimmLayer, ...]:
    """The checked cut points of ``model``: ``given``, or its default ones for ``()``."""
    import_timm()
    skeleton = _skeleton(model)
    if not given:
        return tuple(TimmLayer(c) for c in default_cuts(skeleton))
    units = model_units(skeleton)
    previous = -1
    for i, layer in enumerate(given):
        if layer.end not in units:
            raise MtnasError(f"layers[{i}]: {model} has no cut point {short_repr(layer.end)}"
                             f"{did_you_mean(layer.end, units)}; its cut points, in order: {', '.join(units)}")
        if units.index(layer.end) <= previous:
            raise MtnasError(f"layers[{i}]: {layer.end!r} does not come after {given[i - 1].end!r} in {model}; "
                             f"give the cut points in the order the model runs them: {', '.join(units)}")
        previous = units.index(layer.end)
    return tuple(given)


_warned: set[tuple[str, str]] = set()


def _plan(layers: tuple[TimmLayer, ...], input_shape: tuple[int, ...], source: ModelSource) -> list[BlockPlan]:
    if len(input_shape) != 3:
        raise MtnasError(f"backbone 'timm' needs image inputs (C, H, W), the dataset gives shape {input_shape}")
    installed = timm_version()
    if source.version is not None and source.version != installed and (source.version, installed) not in _warned:
        _warned.add((source.version, installed))
        warnings.warn(f"backbone {source.model!r} was recorded with timm {source.version}, timm {installed} is "
                      "installed: the model is rebuilt with the installed one (weights loaded into it are checked)",
                      stacklevel=2)
    return list(_cached_plan(tuple(layers), tuple(input_shape), source.model, source.pretrained))


@functools.lru_cache(maxsize=16)
def _cached_plan(layers: tuple[TimmLayer, ...], input_shape: tuple[int, ...], model: str,
                 pretrained: bool) -> tuple[BlockPlan, ...]:
    full = _built(model, pretrained, input_shape[0], (input_shape[1], input_shape[2]))
    pieces = cut_model(full, [layer.end for layer in layers], input_shape)
    plans, shape = [], input_shape
    for i, (piece, out_shape) in enumerate(pieces):
        plans.append(BlockPlan(i, shape, out_shape, lambda piece=piece: copy.deepcopy(piece)))
        shape = out_shape
    return tuple(plans)


BACKBONES.add("timm", BackboneType(
    TimmLayer, _plan, "a timm model (backbone.model) cut at its stages; needs mtnas[timm]",
    library=ModelLibrary("timm", timm_version, _layers),
))
