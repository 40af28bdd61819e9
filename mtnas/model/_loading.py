"""An ``arch.json`` (and its trained weights) as a ready ``nn.Module``: no run folder needed."""

from __future__ import annotations

from pathlib import Path

from mtnas.core import MtnasError
from mtnas.model._branched import BranchedNet
from mtnas.model._checkpoint import load_into, load_weights
from mtnas.space import SearchSpace, space_from_dict
from mtnas.tree import Architecture

__all__ = ["arch_space", "load_model"]


def arch_space(arch: Architecture, source: str = "arch.json") -> SearchSpace:
    """The resolved search space stored in an architecture (it alone rebuilds the model)."""
    space = space_from_dict(arch.space, f"{source}: space")
    if not space.is_resolved:
        raise MtnasError(f"{source}: its space is not resolved (no input shape or task sizes); "
                         "write it with 'mtnas export' or a search")
    return space


def load_model(arch: str | Path | Architecture, weights: str | Path | None = None, *, eval: bool = True) -> BranchedNet:
    """The network of an architecture, with ``weights`` loaded when given.

    Args:
        arch: an ``arch.json`` path, or an :class:`~mtnas.tree.Architecture`.
        weights: a ``.safetensors`` file written by ``mtnas retrain`` or ``mtnas export
            --with-weights``; it must belong to this tree (its hash is checked). None: fresh weights.
        eval: return the model in eval mode (for inference), else in train mode.

    Returns:
        A ``BranchedNet``: ``model(x)`` maps a batch (B, ...) to ``{task: output}``.
    """
    source = str(arch) if not isinstance(arch, Architecture) else "architecture"
    arch = arch if isinstance(arch, Architecture) else Architecture.load(arch)
    model = BranchedNet.from_space(arch.tree, arch_space(arch, source), pretrained=weights is None)
    if weights is not None:
        load_into(model, load_weights(weights, tree_key=arch.tree.key), weights)
    return model.train(not eval)
