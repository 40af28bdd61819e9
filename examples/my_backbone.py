"""A user's own backbone for mtnas: residual MLP blocks (Linear -> LayerNorm -> GELU, plus a skip).

Load it on purpose, then name it in a space:
``mtnas --plugins examples.my_dataset,examples.my_backbone train examples/my_backbone_space.yaml``.
"""

from dataclasses import dataclass

from torch import nn

import mtnas
from mtnas.core import bounded
from mtnas.nn import BackboneType, BlockPlan


@dataclass(frozen=True)
class ResidualLayer:
    width: int = bounded(ge=1)  # what one entry of `backbone.layers` in the YAML holds


class ResidualBlock(nn.Module):
    def __init__(self, in_features: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.LayerNorm(width), nn.GELU())
        self.skip = nn.Identity() if in_features == width else nn.Linear(in_features, width, bias=False)

    def forward(self, x):  # (B, in_features) -> (B, width)
        return self.body(x) + self.skip(x)


def plan(layers, input_shape):
    """One BlockPlan per layer: the shapes in and out, and a builder of a fresh copy."""
    plans, features = [], input_shape[0]
    for i, cfg in enumerate(layers):
        plans.append(BlockPlan(i, (features,), (cfg.width,), lambda f=features, w=cfg.width: ResidualBlock(f, w)))
        features = cfg.width
    return plans


@mtnas.register_backbone("residual_mlp")
def residual_mlp() -> BackboneType:
    return BackboneType(ResidualLayer, plan, "residual MLP blocks for flat features")
