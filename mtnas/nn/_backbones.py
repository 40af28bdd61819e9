"""Backbones: per-layer block builders shared by BranchedNet and the supernet.

A backbone turns its per-layer config (a frozen dataclass of its own) and the input shape into a
list of ``BlockPlan``: one per layer, with the shapes in and out and a ``make()`` that builds a fresh
copy of the block. The supernet calls ``make()`` K times per layer, BranchedNet once per tree node,
so a derived tree is built from exactly the blocks it was searched with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mtnas.core import MtnasError, Registry, bounded, did_you_mean, load_factory

__all__ = [
    "BACKBONES",
    "BackboneType",
    "BlockPlan",
    "ConvLayer",
    "MLPLayer",
    "ResNetLayer",
    "backbone_type",
    "plan_backbone",
]


@dataclass(frozen=True)
class BlockPlan:
    """One backbone layer: shapes (without batch) and a builder of a fresh copy."""

    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    make: Callable[[], nn.Module]


@dataclass(frozen=True)
class BackboneType:
    """A registered backbone: the dataclass its layers are parsed into, and its planner."""

    layer_config: type
    plan: Callable[[Sequence[Any], tuple[int, ...]], list[BlockPlan]]
    description: str


BACKBONES: Registry[BackboneType] = Registry("backbone")


def backbone_type(name: str) -> BackboneType:
    """The backbone ``name``: a registered one, or a user's ``"pkg.module:function"`` factory
    returning a ``BackboneType`` (called once per process; nothing is added to ``BACKBONES``)."""
    if name in BACKBONES:
        return BACKBONES.get(name)
    if ":" in name:
        return _from_factory(name)
    raise MtnasError(
        f"unknown backbone {name!r}{did_you_mean(name, BACKBONES.names())}; valid: {', '.join(BACKBONES.names())}, "
        "or 'pkg.module:function' for your own"
    )


@functools.cache
def _from_factory(spec: str) -> BackboneType:
    factory = load_factory(spec, "backbone factory", "a mtnas.nn.BackboneType")
    try:
        made = factory()
    except Exception as exc:  # the user's code: say where it failed
        raise MtnasError(f"backbone factory {spec!r} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(made, BackboneType):
        raise MtnasError(f"backbone factory {spec!r} returned a {type(made).__name__}, expected a "
                         "mtnas.nn.BackboneType (its layer config dataclass and its planner)")
    return made


def plan_backbone(name: str, layers: Sequence[Any], input_shape: tuple[int, ...]) -> list[BlockPlan]:
    """The block plans of backbone ``name`` for ``layers`` on inputs of ``input_shape``."""
    return backbone_type(name).plan(layers, tuple(input_shape))


def _conv_out(size: int, stride: int) -> int:
    return (size + stride - 1) // stride


# --- plain conv stages -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvLayer:
    """A conv -> batch norm -> ReLU block."""

    channels: int = bounded(ge=1)
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

    channels: int = bounded(ge=1)
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

    width: int = bounded(ge=1)


def _mlp_block(in_features: int, cfg: MLPLayer, flatten: bool) -> nn.Module:
    parts: list[nn.Module] = [nn.Flatten()] if flatten else []
    parts += [nn.Linear(in_features, cfg.width), nn.ReLU(inplace=True)]
    return nn.Sequential(*parts)


def _plan_mlp(layers: Sequence[MLPLayer], input_shape: tuple[int, ...]) -> list[BlockPlan]:
    plans, shape = [], input_shape
    for i, cfg in enumerate(layers):
        features = int(torch.tensor(shape).prod())
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
