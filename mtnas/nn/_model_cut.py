"""Cutting a whole vision model into consecutive pieces: the layers of a library backbone.

A model is read as a list of *units*, the modules its forward runs one after another, each named
by its path in the model (``stem``, ``stages.0``, ``layer1``, ``blocks.3``). A cut list names the
last unit of each layer; a layer holds the units after the previous cut, up to its own. Two
readings cover the common families:

- **sequential** (ResNet, ConvNeXt, EfficientNet, MobileNet, RegNet, ...): the model's top-level
  modules in order, the stage containers its ``feature_info`` points into (``stages``, ``blocks``)
  opened into their stages, up to the last module ``feature_info`` names (pooling and classifier
  are dropped), as timm's ``features_only`` networks read them. A piece is an ``nn.Sequential``
  holding its units under their own names, so its state dict keys are the model's
  (``stages.1.blocks.0.conv_dw.weight``). Default cuts: each module ``feature_info`` names and,
  when the first of them opens a stage container (``stages.0``), the stem before it as a layer.
- **tokens** (timm's ``VisionTransformer``): the unit ``patch_embed`` is the stem (patch embedding,
  prefix tokens, position embedding, ``norm_pre``), then each block. Pieces pass the token sequence
  (N, D) on; the last one applies the final norm when it holds the last block and returns the
  patch tokens as a grid (D, H/p, W/p) without the prefix tokens (the layout of timm's
  ``forward_intermediates``), which dense heads need and classification heads average. Default
  cuts: the stem, then the blocks in four groups as even as possible.

Every cut is checked once against the model's own ``forward_features`` (hooks at the cut points,
eval mode, one random batch): a model whose forward does more than run its units in turn is
refused with the point where it differs, never cut wrongly.
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mtnas.core import MtnasError, did_you_mean, first_few, first_line, short_repr
from mtnas.nn._backbone_types import BlockPlan

__all__ = ["ModelLayer", "checked_cuts", "cut_model", "default_cuts", "model_units", "piece_plans", "reads_tokens",
           "warn_version"]


@dataclass(frozen=True)
class ModelLayer:
    """One layer of a library model: its units up to and including ``end`` (a cut point such as
    ``stages.1``, ``layer2`` or ``blocks.5``); a plain string in YAML is this name."""

    _shorthand: ClassVar[str] = "end"

    end: str


def checked_cuts(name: str, skeleton: nn.Module, given: tuple[ModelLayer, ...]) -> tuple[ModelLayer, ...]:
    """The cut points of model ``name`` (its structure: ``skeleton``): ``given``, checked (known
    units, in the order the model runs them), or its default ones for ``()``."""
    if not given:
        return tuple(ModelLayer(c) for c in default_cuts(skeleton))
    units = model_units(skeleton)
    previous = -1
    for i, layer in enumerate(given):
        if layer.end not in units:
            raise MtnasError(f"layers[{i}]: {name} has no cut point {short_repr(layer.end)}"
                             f"{did_you_mean(layer.end, units)}; its cut points, in order: {', '.join(units)}")
        if units.index(layer.end) <= previous:
            raise MtnasError(f"layers[{i}]: {layer.end!r} does not come after {given[i - 1].end!r} in {name}; "
                             f"give the cut points in the order the model runs them: {', '.join(units)}")
        previous = units.index(layer.end)
    return tuple(given)


_warned: set[tuple[str, str, str]] = set()


def warn_version(package: str, model: str, recorded: str | None, installed: str) -> None:
    """Warn (once per process) that ``model`` is rebuilt with another version of ``package``."""
    if recorded is None or recorded == installed or (package, recorded, installed) in _warned:
        return
    _warned.add((package, recorded, installed))
    warnings.warn(f"backbone {model!r} was recorded with {package} {recorded}, {package} {installed} is installed: "
                  "the model is rebuilt with the installed one (weights loaded into it are checked)", stacklevel=3)


def reads_tokens(model: nn.Module) -> bool:
    """Whether ``model`` is read as a vision transformer (patch embedding, then token blocks)."""
    return all(hasattr(model, a) for a in ("patch_embed", "blocks", "_pos_embed", "num_prefix_tokens"))


def _feature_modules(model: nn.Module) -> list[str]:
    info = getattr(model, "feature_info", None)
    if not isinstance(info, (list, tuple)) or not all(isinstance(f, dict) and "module" in f for f in info):
        raise MtnasError(f"{type(model).__name__} has no feature_info naming its stages; mtnas cuts models that have one")
    return [str(f["module"]) for f in info]


def _units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if reads_tokens(model):
        return [("patch_embed", model.patch_embed)] + [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)]
    features = _feature_modules(model)
    units: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential) and any(f.startswith(name + ".") for f in features):
            units += [(f"{name}.{sub}", m) for sub, m in child.named_children()]  # a stage container, opened
        else:
            units.append((name, child))
    names = [n for n, _ in units]
    inside = [f for f in features if f not in names]
    if inside:
        raise MtnasError(f"{type(model).__name__}: its feature_info names modules inside its stages "
                         f"({first_few(inside)}); mtnas cuts between top-level stages only")
    return units[: max(names.index(f) for f in features) + 1]


def model_units(model: nn.Module) -> list[str]:
    """The names of the units of ``model``, in the order its forward runs them."""
    return [name for name, _ in _units(model)]


def default_cuts(model: nn.Module) -> list[str]:
    """The default cut points of ``model``: its stem and stages (see the module docstring)."""
    if reads_tokens(model):
        depth = len(model.blocks)
        groups = min(4, depth)
        return ["patch_embed"] + [f"blocks.{(g + 1) * depth // groups - 1}" for g in range(groups)]
    features = _feature_modules(model)
    names = model_units(model)
    first = names.index(features[0])
    container = features[0].rpartition(".")[0]
    opens_stages = container and first > 0 and not names[first - 1].startswith(container + ".")
    stem = [names[first - 1]] if opens_stages else []  # e.g. 'stem' before 'stages.0', 'bn1' before 'blocks.0'
    return stem + features


def _groups(model: nn.Module, cuts: Sequence[str]) -> list[list[tuple[str, nn.Module]]]:
    units = _units(model)
    names = [n for n, _ in units]
    groups, start = [], 0
    for i, cut in enumerate(cuts):
        if cut not in names:
            raise MtnasError(f"layers[{i}]: {short_repr(cut)} is not a module mtnas can cut "
                             f"{type(model).__name__} after{did_you_mean(cut, names)}; its cut points: {', '.join(names)}")
        end = names.index(cut) + 1
        if end <= start:
            raise MtnasError(f"layers[{i}]: {cut!r} comes before or at the previous cut {cuts[i - 1]!r}; "
                             "give the cut points in the order the model runs them")
        groups.append(units[start:end])
        start = end
    return groups


class _TokenPiece(nn.Module):
    """Consecutive blocks of a vision transformer; the first piece also holds its stem, the last
    returns the patch-token grid. Attribute names are the transformer's, so are its state keys."""

    def __init__(self, vit: nn.Module, blocks: Sequence[tuple[str, nn.Module]], *, stem: bool,
                 norm: bool, grid: tuple[int, int] | None) -> None:
        super().__init__()
        self.has_stem = stem
        if stem:  # the transformer's own stem modules and tokens (None where it has none)
            for name in ("patch_embed", "pos_drop", "patch_drop", "norm_pre"):
                setattr(self, name, copy.deepcopy(getattr(vit, name)))
            for name in ("cls_token", "reg_token", "pos_embed"):
                value = getattr(vit, name, None)
                setattr(self, name, None if value is None else nn.Parameter(value.detach().clone()))
            self.no_embed_class = bool(getattr(vit, "no_embed_class", False))
        self.blocks = nn.Sequential(OrderedDict((name.split(".", 1)[1], copy.deepcopy(b)) for name, b in blocks))
        self.norm = copy.deepcopy(vit.norm) if norm else None
        self.grid = grid
        self.prefix_tokens = int(vit.num_prefix_tokens)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, N, D)
        x = self.patch_embed(x)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if self.pos_embed is None:
            x = torch.cat(prefix + [x], dim=1)
        elif self.no_embed_class:  # the position embedding covers the patches only
            x = torch.cat(prefix + [x + self.pos_embed], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + self.pos_embed
        return self.norm_pre(self.patch_drop(self.pos_drop(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, N, D), or the grid (B, D, h, w)
        if self.has_stem:
            x = self._embed(x)
        x = self.blocks(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.grid is None:
            return x
        return _grid(x, self.prefix_tokens, self.grid)


def _grid(tokens: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, prefix + h*w, D) -> (B, D, h, w): the patch tokens as a feature map."""
    patches = tokens[:, prefix:]
    return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], *grid)


def _sequential_piece(units: Sequence[tuple[str, nn.Module]]) -> nn.Sequential:
    """The units as one ``nn.Sequential``, each under its own path (``stages.1`` inside ``stages``)."""
    top: OrderedDict[str, Any] = OrderedDict()
    for path, module in units:
        head, _, rest = path.partition(".")
        if rest:
            top.setdefault(head, OrderedDict())[rest] = copy.deepcopy(module)
        else:
            top[head] = copy.deepcopy(module)
    return nn.Sequential(OrderedDict((k, nn.Sequential(v) if isinstance(v, OrderedDict) else v) for k, v in top.items()))


def _not_in_place(piece: nn.Module, first_unit: nn.Module) -> None:
    """A piece's input may feed several pieces (supernet copies, tree groups): the ops its first
    unit runs on that input must not write into it."""
    for module in first_unit.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False


def cut_model(model: nn.Module, cuts: Sequence[str], input_shape: tuple[int, ...]) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """``model`` cut after each unit of ``cuts``: one fresh module per layer, with its output shape.

    The pieces are copies (the model is left as it was) in train mode, checked against the
    model's own forward on inputs of ``input_shape`` (without batch).

    Raises:
        MtnasError: an unknown or out-of-order cut point, or a model the pieces do not reproduce.
    """
    groups = _groups(model, cuts)
    tokens = reads_tokens(model)
    pieces: list[nn.Module] = []
    for i, units in enumerate(groups):
        last = i == len(groups) - 1
        if tokens:
            has_stem = units[0][0] == "patch_embed"
            blocks = units[1:] if has_stem else units
            ends = last and units[-1][0] == f"blocks.{len(model.blocks) - 1}"
            grid = tuple(model.patch_embed.grid_size) if last else None
            piece: nn.Module = _TokenPiece(model, blocks, stem=has_stem, norm=ends, grid=grid)
            _not_in_place(piece, piece.patch_embed if has_stem else piece.blocks[0])
        else:
            piece = _sequential_piece(units)
            _not_in_place(piece, piece[0] if not isinstance(piece[0], nn.Sequential) else piece[0][0])
        pieces.append(piece)
    shapes = _check(model, pieces, cuts, input_shape, tokens)
    for piece in pieces:
        piece.train()
    return list(zip(pieces, shapes))


def piece_plans(model: nn.Module, cuts: Sequence[str], input_shape: tuple[int, ...]) -> tuple[BlockPlan, ...]:
    """One ``BlockPlan`` per layer of ``model`` cut at ``cuts``: ``make()`` returns a fresh copy of
    the layer's piece (the same weights each time; the piece itself is never handed out)."""
    plans, shape = [], tuple(input_shape)
    for i, (piece, out_shape) in enumerate(cut_model(model, cuts, input_shape)):
        plans.append(BlockPlan(i, shape, out_shape, lambda piece=piece: copy.deepcopy(piece)))
        shape = out_shape
    return tuple(plans)


class _Reached(Exception):
    """Raised by the hook of the last cut point: the model's forward need not go further."""


def _check(model: nn.Module, pieces: Sequence[nn.Module], cuts: Sequence[str], input_shape: tuple[int, ...],
           tokens: bool) -> list[tuple[int, ...]]:
    """Run the pieces in turn and the model's own forward; their outputs must agree at every cut."""
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    last_block = f"blocks.{len(model.blocks) - 1}" if tokens else None
    watched = [("norm_pre" if c == "patch_embed" else "norm" if c == last_block and i == len(cuts) - 1 else c)
               if tokens else c for i, c in enumerate(cuts)]
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> None:
        seen[name] = out.detach().clone()
        if len(seen) == len(set(watched)):
            raise _Reached  # the rest of the model (its later stages may not fit small inputs) is not run

    hooks = [model.get_submodule(name).register_forward_hook(lambda _m, _i, out, name=name: keep(name, out))
             for name in set(watched)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                getattr(model, "forward_features", model.forward)(x)
            except _Reached:
                pass
            shapes, y = [], x
            for i, (piece, cut, name) in enumerate(zip(pieces, cuts, watched)):
                piece.eval()
                y = piece(y)
                ref = seen.get(name)
                if ref is not None and tokens and i == len(pieces) - 1:
                    ref = _grid(ref, int(model.num_prefix_tokens), tuple(model.patch_embed.grid_size))
                if ref is None or y.shape != ref.shape or not torch.allclose(y, ref, rtol=1e-4, atol=1e-5):
                    diff = ("it never runs there" if ref is None else f"shape {tuple(y.shape[1:])}"
                            if y.shape != ref.shape else f"difference {(y - ref).abs().max().item():.2g}")
                    raise MtnasError(
                        f"{type(model).__name__}: its modules run in turn do not reproduce its own forward at "
                        f"{cut!r} ({diff}); mtnas cuts models whose forward runs its stages one after another "
                        "(ResNet, ConvNeXt, EfficientNet, MobileNet, RegNet, ViT): choose other cut points or another model"
                    )
                shapes.append(tuple(y.shape[1:]))
    except RuntimeError as exc:  # e.g. a later stage's kernel larger than what is left of a small input
        raise MtnasError(f"{type(model).__name__} does not run on inputs of shape {tuple(input_shape)} up to "
                         f"{cuts[-1]!r}: {first_line(exc)[:300]}; cut it earlier (fewer stages) or use larger inputs") from None
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return shapes
