"""Task heads, one registry for all task kinds.

A head maps the last backbone layer's features to one task's output: (B, num_outputs) for
image-level kinds, (B, num_outputs, H, W) at the input resolution for dense kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtnas.core import Registry

__all__ = ["DENSE_KINDS", "HEADS", "HeadType", "build_head"]

DENSE_KINDS = frozenset({"dense_classification", "dense_regression"})


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
