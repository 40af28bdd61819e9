"""A digest of a dataset's content: every tensor of its three splits and its task descriptions.

Trained evidence is keyed by it (``mtnas.train.Evidence``), so a result trained on one dataset is
never read for another that happens to carry the same name in a space: a user who regenerates or
edits their data under the same factory gets new trainings, not the old results.
"""

from __future__ import annotations

import hashlib

import torch

from mtnas.data._bundle import DatasetBundle, TaskData

__all__ = ["data_digest"]


def _feed(h: "hashlib._Hash", name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().to("cpu").contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _split(h: "hashlib._Hash", prefix: str, data: TaskData) -> None:
    _feed(h, f"{prefix}.inputs", data.inputs)
    for task in sorted(data.targets):
        _feed(h, f"{prefix}.targets.{task}", data.targets[task])
    for task in sorted(data.masks):
        _feed(h, f"{prefix}.masks.{task}", data.masks[task])


def data_digest(bundle: DatasetBundle) -> str:
    """The sha256 of the bundle's tensors (inputs, targets, masks of train, val and test) and its
    tasks' names, kinds and sizes; computed once per bundle object."""
    known = bundle.__dict__.get("_mtnas_digest")
    if known is not None:
        return known
    h = hashlib.sha256()
    for task in bundle.tasks:
        h.update(f"task:{task.name}:{task.kind}:{task.num_outputs};".encode())
    for name in ("train", "val", "test"):
        _split(h, name, getattr(bundle, name))
    digest = h.hexdigest()
    object.__setattr__(bundle, "_mtnas_digest", digest)  # a frozen dataclass: kept beside its fields
    return digest
