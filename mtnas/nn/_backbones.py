"""Backbones: per-layer block builders shared by BranchedNet and the supernet.

A backbone turns its per-layer config (a frozen dataclass of its own) and the input shape into a
list of ``BlockPlan``: one per layer, with the shapes in and out and a ``make()`` that builds a fresh
copy of the block. The supernet calls ``make()`` K times per layer, BranchedNet once per tree node,
so a derived tree is built from exactly the blocks it was searched with.

A backbone may wrap a library of whole models (the built-in ``timm`` and ``torchvision``, defined
in their own modules on the types of ``mtnas.nn._backbone_types`` and registered here with mtnas's
own ``conv``, ``resnet`` and ``mlp``): its ``BackboneType`` then holds a ``ModelLibrary``, the
config names a ``model`` (and ``pretrained``), and the planner gets them as a ``ModelSource``;
each plan's ``make()`` copies one piece of that model.

A user's backbone is registered with :func:`register_backbone` in a module loaded on purpose
(``mtnas --plugins MODULE``, ``MTNAS_PLUGINS``, an import) or as a ``mtnas.backbones`` entry
point; a name a file gives that is not registered is refused, and nothing is imported for it.
``check_backbone_size`` refuses a backbone too large to build (see ``MAX_BACKBONE_PARAMS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from mtnas.core import MtnasError, PluginRegistry, Registry, bounded, first_line
from mtnas.nn._backbone_types import (
    BackboneType,
    BlockPlan,
    ModelSource,
)
from mtnas.nn._timm import TIMM_BACKBONE
from mtnas.nn._torchvision import TORCHVISION_BACKBONE

__all__ = [
    "BACKBONES",
    "USER_BACKBONES",
    "ConvLayer",
    "MLPLayer",
    "ResNetLayer",
    "backbone_type",
    "plan_backbone",
    "register_backbone",
]

F = TypeVar("F")

BACKBONES: Registry[BackboneType] = Registry("backbone")


def _backbone_of(name: str, obj: Any) -> BackboneType:
    """What ``register_backbone`` registered, as a ``BackboneType``: itself, or what its factory returns."""
    if isinstance(obj, BackboneType):
        return obj
    if not callable(obj):
        raise MtnasError(f"backbone {name!r}: registered a {type(obj).__name__}; register a BackboneType or a "
                         "function returning one")
    try:
        made = obj()
    except Exception as exc:  # the user's code: say where it failed
        raise MtnasError(f"backbone {name!r}: its factory failed: {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(made, BackboneType):
        raise MtnasError(f"backbone {name!r}: its factory returned a {type(made).__name__}, expected a "
                         "mtnas.nn.BackboneType (its layer config dataclass and its planner)")
    return made


#: The user's backbones (decorator, plugin modules, ``mtnas.backbones`` entry points), beside the built-ins.
USER_BACKBONES: PluginRegistry[BackboneType] = PluginRegistry(
    BACKBONES, group="mtnas.backbones", decorator="mtnas.register_backbone", convert=_backbone_of
)


def register_backbone(name: str) -> Callable[[F], F]:
    """Decorator: register a ``BackboneType``, or a function returning one (called once, on first
    use), as backbone ``name``; a space then names it ``backbone: {name: NAME, ...}``.

    The module must be loaded on purpose: ``mtnas --plugins MODULE``, ``MTNAS_PLUGINS=MODULE`` or
    an ``import`` in your script. Its ``"pkg.module:function"`` path names it too (older spaces).
    """
    return USER_BACKBONES.register(name)


def backbone_type(name: str) -> BackboneType:
    """The registered backbone ``name`` (built-in or a user's; see :func:`register_backbone`).

    Raises:
        MtnasError: a name that is not registered; nothing is imported or called for it.
    """
    return USER_BACKBONES.get(name)


def plan_backbone(
    name: str, layers: Sequence[Any], input_shape: tuple[int, ...], source: ModelSource | None = None
) -> list[BlockPlan]:
    """The block plans of backbone ``name`` for ``layers`` on inputs of ``input_shape``; ``source``
    names the model of a library backbone (and only of one)."""
    kind = backbone_type(name)
    if kind.library is None:
        if source is not None:
            raise MtnasError(f"backbone {name!r} takes no model; it builds its own blocks from its layers")
        return kind.plan(layers, tuple(input_shape))
    if source is None:
        raise MtnasError(f"backbone {name!r} needs a model: the name of a {kind.library.package} model")
    return kind.plan(layers, tuple(input_shape), source)


def _conv_out(size: int, stride: int) -> int:
    return (size + stride - 1) // stride


# --- plain conv stages -------------------------------------------------------------------------

#: The widest layers of the built-in backbones (a ResNet's widest stage has 2048 channels).
MAX_CHANNELS = 8192
MAX_WIDTH = 65536


@dataclass(frozen=True)
class ConvLayer:
    """A conv -> batch norm -> ReLU block."""

    channels: int = bounded(ge=1, le=MAX_CHANNELS)
    stride: int = bounded(1, ge=1, le=4)
    kernel: int = bounded(3, ge=1, le=7)


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, cfg: ConvLayer) -> None:
        super().__init__(
            nn.Conv2d(in_channels, cfg.channels, cfg.kernel, cfg.stride, cfg.kernel // 2, bias=False),
            nn.BatchNorm2d(cfg.channels),
            nn.ReLU(inplace=True),
        )


def _image_planner(name: str, block: Callable[[int, Any], nn.Module]) -> Callable[..., list[BlockPlan]]:
    """A planner for image blocks configured by ``channels`` and ``stride``."""

    def plan(layers: Sequence[Any], input_shape: tuple[int, ...]) -> list[BlockPlan]:
        _require_image(input_shape, name)
        plans, (c, h, w) = [], input_shape
        for i, cfg in enumerate(layers):
            out = (cfg.channels, _conv_out(h, cfg.stride), _conv_out(w, cfg.stride))
            plans.append(BlockPlan(i, (c, h, w), out, lambda c=c, cfg=cfg: block(c, cfg)))
            c, h, w = out
        return plans

    return plan


# --- ResNet basic-block stages -----------------------------------------------------------------


@dataclass(frozen=True)
class ResNetLayer:
    """A ResNet basic block (He et al. 2016): two 3x3 convs and a (projected) shortcut."""

    channels: int = bounded(ge=1, le=MAX_CHANNELS)
    stride: int = bounded(1, ge=1, le=4)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, cfg: ResNetLayer) -> None:
        super().__init__()
        c = cfg.channels
        self.conv1 = nn.Conv2d(in_channels, c, 3, cfg.stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.shortcut: nn.Module = nn.Identity()
        if cfg.stride != 1 or in_channels != c:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, c, 1, cfg.stride, bias=False), nn.BatchNorm2d(c)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C, H/s, W/s)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


# --- MLP for tabular data ----------------------------------------------------------------------


@dataclass(frozen=True)
class MLPLayer:
    """A linear -> ReLU block; the first one flattens its input."""

    width: int = bounded(ge=1, le=MAX_WIDTH)


def _mlp_block(in_features: int, cfg: MLPLayer, flatten: bool) -> nn.Module:
    parts: list[nn.Module] = [nn.Flatten()] if flatten else []
    parts += [nn.Linear(in_features, cfg.width), nn.ReLU(inplace=True)]
    return nn.Sequential(*parts)


def _plan_mlp(layers: Sequence[MLPLayer], input_shape: tuple[int, ...]) -> list[BlockPlan]:
    plans, shape = [], input_shape
    for i, cfg in enumerate(layers):
        features = math.prod(shape)
        plans.append(
            BlockPlan(i, shape, (cfg.width,), lambda f=features, cfg=cfg, i=i: _mlp_block(f, cfg, i == 0))
        )
        shape = (cfg.width,)
    return plans


def _require_image(input_shape: tuple[int, ...], name: str) -> None:
    if len(input_shape) != 3:
        raise MtnasError(
            f"backbone {name!r} needs image inputs (C, H, W), the dataset gives shape {input_shape}; "
            "use backbone 'mlp' for flat features"
        )


BACKBONES.add("conv", BackboneType(ConvLayer, _image_planner("conv", ConvBlock), "plain conv-BN-ReLU stages"))
BACKBONES.add("resnet", BackboneType(ResNetLayer, _image_planner("resnet", BasicBlock), "ResNet basic-block stages"))
BACKBONES.add("mlp", BackboneType(MLPLayer, _plan_mlp, "linear-ReLU layers for tabular data"))

BACKBONES.add("timm", TIMM_BACKBONE)
BACKBONES.add("torchvision", TORCHVISION_BACKBONE)
