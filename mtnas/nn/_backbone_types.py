"""What every backbone is made of: the plan of one layer, the type a backbone registers, the
model a library backbone cuts, and the size limit of a backbone.

The backbones themselves (mtnas's own blocks, and the ``timm`` and ``torchvision`` libraries'
models) build on these types, and ``mtnas.nn._backbones`` registers them all: this module imports
none of them, so the backbone modules import in one direction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mtnas.core import MtnasError

__all__ = [
    "MAX_ACTIVATION",
    "MAX_BACKBONE_PARAMS",
    "BackboneType",
    "BlockPlan",
    "ModelLibrary",
    "ModelSource",
    "check_backbone_size",
]

#: The most parameters one copy of a backbone may have (8 GiB of float32): more is a typo.
MAX_BACKBONE_PARAMS = 2**31
#: The most values one sample may have at the input or at any layer's output (1 GiB of float32).
MAX_ACTIVATION = 2**28


@dataclass(frozen=True)
class BlockPlan:
    """One backbone layer: shapes (without batch) and a builder of a fresh copy."""

    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    make: Callable[[], nn.Module]


@dataclass(frozen=True)
class ModelSource:
    """The whole model a library backbone cuts into layers: its name in the library, whether it
    starts from the library's pretrained weights, and the library version a space recorded
    (``None``: not recorded yet)."""

    model: str
    pretrained: bool = False
    version: str | None = None


@dataclass(frozen=True)
class ModelLibrary:
    """What a backbone that wraps a model library adds to its planner.

    Attributes:
        package: the library's name, as messages and ``arch.json`` give it ("timm").
        version: the installed library's version (raises ``MtnasError`` with an install hint
            when it is not installed).
        layers: ``layers(model, given)``: the cut points of ``model``, the ones given (checked:
            an unknown model or cut point raises ``MtnasError``) or, for ``()``, the default ones.
    """

    package: str
    version: Callable[[], str]
    layers: Callable[[str, tuple[Any, ...]], tuple[Any, ...]]


@dataclass(frozen=True)
class BackboneType:
    """A registered backbone: the dataclass its layers are parsed into, and its planner.

    ``plan(layers, input_shape)`` builds the plans; a backbone with a ``library`` is called as
    ``plan(layers, input_shape, source)`` with the :class:`ModelSource` its config names.
    """

    layer_config: type
    plan: Callable[..., list[BlockPlan]]
    description: str
    library: ModelLibrary | None = None


def check_backbone_size(plans: Sequence[BlockPlan], input_shape: tuple[int, ...]) -> int:
    """The parameters of one copy of the planned backbone, after checking it is sane to build.

    Each block is built on PyTorch's ``meta`` device (no memory is allocated); a block that cannot
    be built there is not counted.

    Raises:
        MtnasError: a sample of more than :data:`MAX_ACTIVATION` values at the input or at a layer's
            output, or more than :data:`MAX_BACKBONE_PARAMS` parameters.
    """
    for where, shape in [("the input", tuple(input_shape))] + [(f"layer {p.index}", p.out_shape) for p in plans]:
        size = math.prod(shape)
        if size > MAX_ACTIVATION:
            raise MtnasError(f"{where} holds {size:,} values per sample (shape {shape}), more than mtnas builds "
                             f"({MAX_ACTIVATION:,}); lower the channels, width or input size")
    total = 0
    for plan in plans:
        total += _meta_params(plan)
        if total > MAX_BACKBONE_PARAMS:
            raise MtnasError(f"the backbone has {total:,} parameters by layer {plan.index}, more than mtnas builds "
                             f"({MAX_BACKBONE_PARAMS:,}); lower the channels or width")
    return total


def _meta_params(plan: BlockPlan) -> int:
    try:
        with torch.device("meta"):
            block = plan.make()
        return sum(p.numel() for p in block.parameters())
    except Exception:  # a user block that needs real memory to build: not counted
        return 0
