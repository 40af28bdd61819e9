"""Task heads, one registry for all task kinds.

A head maps the last backbone layer's features to one task's output: (B, num_outputs) for
image-level kinds, (B, num_outputs, H, W) at the input resolution for dense kinds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtnas.core import MtnasError, Registry
from mtnas.nn._backbone_types import MAX_ACTIVATION  # one limit for every activation

__all__ = ["DENSE_KINDS", "HEADS", "MAX_HEAD_PARAMS", "RESERVED_TASK_NAMES", "HeadType", "build_head", "check_head_size"]

DENSE_KINDS = frozenset({"dense_classification", "dense_regression"})
#: Names a task cannot have: the heads are an ``nn.ModuleDict`` keyed by task, which refuses its own
#: attributes (``training``, ``forward``, ``keys``, ...) as keys.
RESERVED_TASK_NAMES = frozenset(dir(nn.ModuleDict()))
#: The most parameters one task head may have (4 GiB of float32): more is a typo, or a file's lie.
MAX_HEAD_PARAMS = 2**30


@dataclass(frozen=True)
class HeadType:
    """A registered head: its builder and the task kinds it serves.

    ``build(in_shape, num_outputs, out_size)`` gets the feature shape without batch, the output
    channels, and for dense heads the (H, W) to produce.
    """

    build: Callable[[tuple[int, ...], int, tuple[int, int] | None], nn.Module]
    kinds: frozenset[str]
    description: str


HEADS: Registry[HeadType] = Registry("head")


def build_head(
    name: str, kind: str, in_shape: tuple[int, ...], num_outputs: int, out_size: tuple[int, int] | None
) -> nn.Module:
    """A fresh head ``name`` for a task of ``kind``; errors when the head does not serve it."""
    return HEADS.get_for_kind(name, kind, verb="serve").build(tuple(in_shape), num_outputs, out_size)


def check_head_size(
    name: str, kind: str, in_shape: tuple[int, ...], num_outputs: int, out_size: tuple[int, int] | None
) -> int:
    """The parameters of head ``name`` for ``num_outputs`` outputs, counted on PyTorch's ``meta``
    device (nothing is allocated), after checking they and a dense head's output per sample are of
    a size mtnas builds.

    Raises:
        MtnasError: more than :data:`MAX_HEAD_PARAMS` parameters, or a dense output of more than
            ``MAX_ACTIVATION`` values per sample; the message names the size in bytes.
    """
    if out_size is not None and num_outputs * out_size[0] * out_size[1] > MAX_ACTIVATION:
        values = num_outputs * out_size[0] * out_size[1]
        raise MtnasError(f"a dense head of {num_outputs:,} outputs at {out_size[0]}x{out_size[1]} produces {values:,} "
                         f"values per sample ({_bytes(4 * values)} of float32), more than mtnas builds "
                         f"({MAX_ACTIVATION:,})")
    approx = (math.prod(in_shape[:1]) + 1) * num_outputs  # the output layer alone, before building anything
    if approx <= MAX_HEAD_PARAMS:
        with torch.device("meta"):
            approx = sum(p.numel() for p in build_head(name, kind, in_shape, num_outputs, out_size).parameters())
    if approx > MAX_HEAD_PARAMS:
        raise MtnasError(f"a {name} head of {num_outputs:,} outputs on {in_shape[0]:,} features holds at least "
                         f"{approx:,} parameters ({_bytes(4 * approx)} of float32), more than mtnas builds "
                         f"({MAX_HEAD_PARAMS:,}); check num_outputs")
    return approx


def _bytes(n: int) -> str:
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,} bytes"


class PooledLinear(nn.Module):
    """Global average pool (for feature maps) then one linear layer."""

    def __init__(self, in_shape: tuple[int, ...], num_outputs: int, hidden: int = 0) -> None:
        super().__init__()
        c = in_shape[0]
        self.pool = len(in_shape) == 3
        if hidden:
            self.fc: nn.Module = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_outputs))
        else:
            self.fc = nn.Linear(c, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) or (B, C) -> (B, out)
        if self.pool:
            x = x.mean(dim=(2, 3))
        return self.fc(x)


class DenseHead(nn.Module):
    """Optional 3x3 conv, a 1x1 conv to the outputs, then bilinear upsampling to ``out_size``."""

    def __init__(self, in_shape: tuple[int, ...], num_outputs: int, out_size: tuple[int, int], hidden: int = 0) -> None:
        super().__init__()
        c = in_shape[0]
        layers: list[nn.Module] = []
        if hidden:
            layers += [nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(inplace=True)]
            c = hidden
        layers.append(nn.Conv2d(c, num_outputs, 1))
        self.body = nn.Sequential(*layers)
        self.out_size = tuple(out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, out, H, W)
        y = self.body(x)
        if tuple(y.shape[-2:]) != self.out_size:
            y = F.interpolate(y, size=self.out_size, mode="bilinear", align_corners=False)
        return y


_IMAGE_LEVEL = frozenset({"classification", "multilabel", "regression"})

HEADS.add("linear", HeadType(lambda s, n, _: PooledLinear(s, n), _IMAGE_LEVEL, "global average pool + linear"))
HEADS.add("mlp", HeadType(lambda s, n, _: PooledLinear(s, n, hidden=64), _IMAGE_LEVEL, "pool + 64-unit MLP"))
HEADS.add(
    "conv1x1",
    HeadType(lambda s, n, size: DenseHead(s, n, size), DENSE_KINDS, "1x1 conv + bilinear upsampling"),
)
HEADS.add(
    "conv",
    HeadType(lambda s, n, size: DenseHead(s, n, size, hidden=32), DENSE_KINDS, "3x3 conv, 1x1 conv, upsampling"),
)
