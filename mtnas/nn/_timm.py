"""The built-in ``timm`` backbone: a model of PyTorch Image Models (timm) cut into searched layers.

``backbone: {name: timm, model: convnext_atto, pretrained: false, layers: [stem, stages.1, stages.3]}``
builds the model with ``timm.create_model`` (``in_chans`` and, for a vision transformer,
``img_size`` from the dataset's input shape), reads it as consecutive units and cuts it after each
unit ``layers`` names (default: the stem and each stage; see ``mtnas.nn._model_cut``). Each
layer's ``make()`` returns a fresh copy of its piece of that one model, so every supernet copy
and every tree group starts from the same weights: timm's pretrained ones with ``pretrained:
true`` (timm's own loading: the Hugging Face cache, or a download), else timm's initialisation
drawn under a fixed seed (``INIT_SEED``: the same weights in every process). The model is built
once per process and kept.

timm is an optional dependency (``pip install 'mtnas[timm]'``), imported only when a space names
this backbone. timm imports torchvision, through ``import_torchvision`` (which copes with a CUDA
torchvision beside a CPU torch: see ``mtnas.nn._torchvision``).
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any

import torch
from torch import nn

from mtnas.core import MtnasError, did_you_mean, first_line, short_repr
from mtnas.nn._backbone_types import BackboneType, BlockPlan, ModelLibrary, ModelSource
from mtnas.nn._model_cut import ModelLayer, checked_cuts, piece_plans, reads_tokens, warn_version
from mtnas.nn._torchvision import import_torchvision

__all__ = ["TIMM_BACKBONE", "TIMM_INSTALL", "import_timm", "timm_version"]

TIMM_INSTALL = "pip install 'mtnas[timm]'"
#: The seed timm's initialisation is drawn under when no pretrained weights are asked for.
INIT_SEED = 0


def import_timm() -> ModuleType:
    """The ``timm`` module.

    Raises:
        MtnasError: timm (or a package it needs) is not installed: one line with the install hint.
    """
    if sys.modules.get("timm") is not None:
        return sys.modules["timm"]
    try:
        import_torchvision()
        import timm
    except ModuleNotFoundError as exc:
        missing = exc.name or "timm"
        raise MtnasError(f"backbone 'timm' needs the timm package ({missing} is not installed): {TIMM_INSTALL}") from None
    return timm


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
    """``model``'s structure, for its cut points: built on the meta device (no memory, no weights)
    where it can be, else on the CPU (a model whose constructor reads tensor values)."""
    timm = import_timm()
    try:
        with torch.device("meta"):
            return _create(timm, model, pretrained=False)
    except MtnasError as exc:
        if not str(exc).startswith("model: timm could not build"):
            raise  # an unknown name: no second try
    with torch.random.fork_rng(devices=[]):
        return _create(timm, model, pretrained=False)


@functools.lru_cache(maxsize=4)
def _built(model: str, pretrained: bool, in_chans: int, img_size: tuple[int, int]) -> nn.Module:
    """``model`` with real weights, for inputs of ``in_chans`` channels (and ``img_size`` for a
    vision transformer); timm's initialisation is drawn under ``INIT_SEED`` without touching the
    global random state."""
    extra: dict[str, Any] = {"img_size": img_size, "dynamic_img_size": False} if reads_tokens(_skeleton(model)) else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        return _create(import_timm(), model, pretrained=pretrained, in_chans=in_chans, **extra).eval()


def _layers(model: str, given: tuple[ModelLayer, ...]) -> tuple[ModelLayer, ...]:
    import_timm()  # installed: else one line with the install hint
    return checked_cuts(model, _skeleton(model), given)


def _plan(layers: tuple[ModelLayer, ...], input_shape: tuple[int, ...], source: ModelSource) -> list[BlockPlan]:
    if len(input_shape) != 3:
        raise MtnasError(f"backbone 'timm' needs image inputs (C, H, W), the dataset gives shape {input_shape}")
    warn_version("timm", source.model, source.version, timm_version())
    return list(_cached_plan(tuple(layers), tuple(input_shape), source.model, source.pretrained))


@functools.lru_cache(maxsize=16)
def _cached_plan(layers: tuple[ModelLayer, ...], input_shape: tuple[int, ...], model: str,
                 pretrained: bool) -> tuple[BlockPlan, ...]:
    full = _built(model, pretrained, input_shape[0], (input_shape[1], input_shape[2]))
    return piece_plans(full, [layer.end for layer in layers], input_shape)


#: The ``timm`` backbone (registered by ``mtnas.nn._backbones``).
TIMM_BACKBONE = BackboneType(
    ModelLayer, _plan, "a timm model (backbone.model) cut at its stages; needs mtnas[timm]",
    library=ModelLibrary("timm", timm_version, _layers),
)
