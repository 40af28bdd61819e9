"""Weights and training state on disk, safely.

Weights are ``.safetensors`` files (never pickle) whose metadata names the format, the tree they
belong to, and a SHA-256 of the tensor bytes, so a file for another tree, a truncated file and a
tampered one are each refused with a message that says which. Training state (optimizer,
schedule, epoch, RNG states, history) is a ``torch.save`` file read back with
``weights_only=True``: plain containers and tensors only.

A checkpoint is a folder holding ``weights.safetensors`` and ``state.pt``. It is written as a new
folder and renamed into place, so a process killed at any moment leaves the previous checkpoint
or the new one, never a mixed or half-written pair.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtnas.core import (
    MtnasError,
    atomic_write_bytes,
    first_few,
    first_line,
    interrupts_deferred,
    regular_file,
    short_repr,
)

__all__ = [
    "WEIGHTS_FORMAT",
    "WEIGHTS_VERSION",
    "find_checkpoint",
    "fit_problems",
    "load_checkpoint",
    "load_into",
    "load_state",
    "load_weights",
    "read_safetensors",
    "remove_checkpoint",
    "save_checkpoint",
    "save_state",
    "save_weights",
    "tensors_sha256",
    "torch_load_checked",
]

WEIGHTS_FORMAT = "mtnas-weights"
WEIGHTS_VERSION = "1"
_RESERVED = ("format", "version", "tree_key", "sha256")


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's raw bytes, keys in sorted order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        flat = state[key].detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_weights(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    *,
    tree_key: str,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``state_dict`` as safetensors with mtnas metadata, atomically.

    Args:
        path: the ``.safetensors`` file to write.
        state_dict: tensor name -> tensor (any device; stored from CPU copies).
        tree_key: ``BranchingTree.key`` of the tree these weights belong to.
        extra_metadata: more string entries (e.g. ``{"epoch": "3"}``); reserved keys are refused.
    """
    from safetensors.torch import save

    extra = dict(extra_metadata or {})
    clash = [k for k in extra if k in _RESERVED]
    if clash:
        raise ValueError(f"extra_metadata may not set {clash}; reserved: {', '.join(_RESERVED)}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    metadata = {
        **{str(k): str(v) for k, v in extra.items()},
        "format": WEIGHTS_FORMAT,
        "version": WEIGHTS_VERSION,
        "tree_key": tree_key,
        "sha256": tensors_sha256(tensors),
    }
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def read_safetensors(path: Path, source: str, what: str = "safetensors file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a ``.safetensors`` file; a damaged one is one line naming ``source``."""
    from safetensors import SafetensorError, safe_open

    _regular(path, source, what)
    with interrupts_deferred():  # a Ctrl-C here would come out as a RuntimeError: a "damaged" file
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise MtnasError(f"{source}: damaged or truncated {what} ({first_line(exc)})") from None
    return tensors, metadata


def load_weights(path: str | Path, *, tree_key: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Read an mtnas weights file, checking its format, its tree and its checksum.

    Args:
        path: a file written by :func:`save_weights`.
        tree_key: when given, the file must belong to this tree.
        metadata: entries its metadata must hold, as written with ``extra_metadata`` (e.g. the unit
            of evidence the weights were trained as: another unit's file of the same tree is refused).

    Raises:
        MtnasError: the file is missing, damaged, not mtnas weights, for another tree or another
            ``metadata``, or its tensors do not match the checksum it was written with.
    """
    path, metadata_wanted = Path(path), metadata
    tensors, metadata = read_safetensors(path, str(path), "weights file")
    fmt = metadata.get("format")
    if fmt != WEIGHTS_FORMAT:
        found = "no format in its metadata" if fmt is None else f"format {fmt!r}"
        raise MtnasError(f"{path}: not an mtnas weights file ({found}, expected {WEIGHTS_FORMAT!r})")
    version = metadata.get("version", "")
    if not version.isdigit() or int(version) > int(WEIGHTS_VERSION):
        raise MtnasError(
            f"{path}: weights file version {version!r} is not one this mtnas reads ({WEIGHTS_VERSION}); upgrade mtnas"
        )
    if tree_key is not None and metadata.get("tree_key") != tree_key:
        described = f" ({metadata['tree']})" if "tree" in metadata else ""
        raise MtnasError(
            f"{path}: weights are for tree {metadata.get('tree_key')}{described}, the architecture is tree "
            f"{tree_key}; use the weights exported with this arch.json"
        )
    for name, wanted in (metadata_wanted or {}).items():
        found = metadata.get(name)
        if found != wanted:
            if found is None:
                raise MtnasError(f"{path}: no {name} in its metadata, expected {name} {short_repr(wanted, 24)} (another "
                                 "file put in its place, or one an older mtnas wrote)")
            raise MtnasError(f"{path}: its metadata says {name} {short_repr(found, 24)}, expected {name} "
                             f"{short_repr(wanted, 24)}: the weights belong to another (a file put in its place)")
    expected = metadata.get("sha256")
    if expected is None:
        raise MtnasError(f"{path}: weights file has no sha256 in its metadata; it was not written by mtnas")
    actual = tensors_sha256(tensors)
    if actual != expected:
        raise MtnasError(
            f"{path}: weights do not match their checksum (sha256 {actual[:12]}..., the file says "
            f"{expected[:12]}...): the file was modified or damaged"
        )
    return tensors


def _dtype_fits(own: torch.dtype, given: torch.dtype) -> bool:
    """Whether a tensor of ``given`` dtype may load into one of ``own``: a float into a float (any
    width), an integer into an integer; never a complex or bool tensor into a number, which
    ``load_state_dict`` would cast silently (complex to real drops the imaginary part)."""
    def kind(dtype: torch.dtype) -> str:
        if dtype == torch.bool:
            return "bool"
        if dtype.is_complex:
            return "complex"
        return "float" if dtype.is_floating_point else "int"

    return kind(own) == kind(given)


def fit_problems(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``state`` from loading into a module whose state dict is ``own``: shape
    mismatches, tensors of a dtype the module's cannot take (complex, bool or integer weights),
    missing and unexpected tensors, each with its first names (empty: it fits)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: expected {tuple(v.shape)}, found {tuple(state[k].shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    wrong_dtype = [
        f"{k}: {str(state[k].dtype).removeprefix('torch.')}, expected {str(v.dtype).removeprefix('torch.')}"
        for k, v in own.items()
        if k in state and isinstance(state[k], torch.Tensor) and not _dtype_fits(v.dtype, state[k].dtype)
    ]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) ({first_few(mismatched)})")
    if wrong_dtype:
        problems.append(f"{len(wrong_dtype)} tensor(s) of a dtype the model's cannot take, refused rather than "
                        f"cast ({first_few(wrong_dtype)})")
    if missing:
        problems.append(f"missing {len(missing)} tensor(s) ({first_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) ({first_few(unexpected)})")
    return problems


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Copy ``state`` into ``model`` after checking names and shapes; ``source`` names the file in errors."""
    problems = fit_problems(model.state_dict(), state)
    if problems:
        raise MtnasError(f"{source}: weights do not fit the model: {'; '.join(problems)}")
    model.load_state_dict(dict(state), strict=True)


def save_state(path: str | Path, state: Mapping[str, Any]) -> Path:
    """``torch.save`` of plain containers and tensors, written atomically."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


#: What torch's weights-only unpickler says of a global it will not load (torch 2.4 to 2.6+ wordings).
_BLOCKED = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


def torch_load_checked(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every fault one MtnasError line.

    A pickled object (a global the weights-only unpickler blocks, e.g. ``posix.system``) is
    refused for what it is; anything else unreadable is "damaged". torch's warnings (an unusual
    pickle protocol, ...) are not shown: the error says all there is to say.

    Args:
        path: the ``.pt``/``.pth`` file.
        what: what the file is, prefixing the message (e.g. "backbone.weights: r18.pth").
    """
    _regular(Path(path), what, "torch.save file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or unsafe (pickled-object) files
        raise MtnasError(f"{what}: {_torch_load_problem(exc)}") from None


def _torch_load_problem(exc: Exception) -> str:
    blocked = _BLOCKED.search(str(exc))
    if blocked:
        return (
            f"refused: it pickles a {blocked[1]} object, and .pt/.pth files are read with "
            "torch.load(weights_only=True), tensors only; save a state_dict() of tensors, or use .safetensors"
        )
    if isinstance(exc, pickle.UnpicklingError):
        return "damaged, or not a torch.save file of tensors (torch.load(weights_only=True) could not read it)"
    return f"damaged or unreadable ({first_line(exc)})"


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a file of :func:`save_state` with ``weights_only=True`` (no arbitrary objects)."""
    path = Path(path)
    _regular(path, str(path), "training-state file")
    state = torch_load_checked(path, f"{path}: training-state file")
    if not isinstance(state, dict):
        raise MtnasError(f"{path}: not an mtnas training-state file (a {type(state).__name__}, expected a dict)")
    return state


def save_checkpoint(
    folder: str | Path,
    weights: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    *,
    tree_key: str,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Replace ``folder`` by a new checkpoint (``weights.safetensors`` + ``state.pt``) in one rename.

    The pair is written into ``<folder>.tmp``; the old folder moves to ``<folder>.old`` just
    before the rename and is deleted after it, and :func:`load_checkpoint` falls back to it.
    """
    folder = Path(folder)
    tmp, old = _sibling(folder, "tmp"), _sibling(folder, "old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(tmp / "weights.safetensors", weights, tree_key=tree_key, extra_metadata=extra_metadata)
    save_state(tmp / "state.pt", state)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def find_checkpoint(folder: str | Path) -> Path | None:
    """``folder`` when it holds a checkpoint, else a complete ``<folder>.old`` left by a kill, else None."""
    folder = Path(folder)
    for candidate in (folder, _sibling(folder, "old")):
        if (candidate / "weights.safetensors").is_file() and (candidate / "state.pt").is_file():
            return candidate
    return None


def load_checkpoint(folder: str | Path, *, tree_key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and training state of the checkpoint in ``folder`` (see :func:`find_checkpoint`)."""
    found = find_checkpoint(folder)
    if found is None:
        raise MtnasError(f"{folder}: no checkpoint to resume from")
    return load_weights(found / "weights.safetensors", tree_key=tree_key), load_state(found / "state.pt")


def remove_checkpoint(folder: str | Path) -> None:
    """Delete the checkpoint in ``folder`` and what a killed save left beside it (``--restart``)."""
    folder = Path(folder)
    for candidate in (folder, _sibling(folder, "old"), _sibling(folder, "tmp")):
        shutil.rmtree(candidate, ignore_errors=True)


def _regular(path: Path, source: str, what: str) -> None:
    """Refuse, in one line prefixed with ``source``, a path that is not a regular file (a FIFO would
    block the reader, a device never end)."""
    try:
        regular_file(path, what)
    except MtnasError as exc:
        if source == str(path):
            raise
        raise MtnasError(f"{source}: {str(exc).removeprefix(f'{path}: ')}") from None


def _sibling(folder: Path, suffix: str) -> Path:
    return folder.with_name(f".{folder.name}.{suffix}")
