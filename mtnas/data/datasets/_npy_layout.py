"""Real benchmarks read from disk: argument checks, resizing, and the per-sample ``.npy`` layout.

The ``.npy`` layout is the preprocessed one of MTAN (Liu et al., 2019, "End-to-End Multi-Task
Learning with Attention") and LibMTL: ``ROOT/{train,val}/<field>/<N>.npy``, one array per sample
and field (``image``, ``label``, ``depth``, ...), ``N`` = 0, 1, 2, ... Their ``val`` split is the
benchmark's test set, so ``val`` becomes the test split here and validation is carved from
``train``; a root with a ``test/`` folder is read as train/val/test as is.

Ignored pixels: segmentation files mark them -1; the tensors hold ``IGNORE_INDEX`` (-100, the
default ``ignore_index`` of ``torch.nn.functional.cross_entropy``), so the ``cross_entropy`` loss
skips them and the ``masked_*`` metrics do too. Invalid depth and normals are 0 (all channels), as
in the files; the ``depth_abs_err``, ``rel_err``, ``angle_mean`` and ``angle_*`` metrics
skip them.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtnas.core import MtnasError, regular_file, short_repr
from mtnas.data._bundle import DatasetBundle, TaskData, TaskInfo
from mtnas.data.datasets._common import check_float, check_int, check_seed

__all__ = [
    "IGNORE_INDEX",
    "DataNotFoundError",
    "NpyField",
    "check_limit",
    "check_root",
    "check_size",
    "load_npy_benchmark",
    "resize_images",
    "resize_labels",
    "resize_masked",
]

#: Target of an ignored pixel in dense_classification tensors (cross_entropy's default ignore_index).
IGNORE_INDEX = -100
_CHUNK = 64  # samples read and resized at once: bounds the memory of full-resolution arrays


class DataNotFoundError(MtnasError):
    """The files a dataset reads are not on disk (a real benchmark whose root is not set).

    Tests that build every built-in space skip a space that raises it.
    """


@dataclass(frozen=True)
class NpyField:
    """One task of an ``.npy``-layout benchmark: its folder per split and how its arrays read.

    ``info.kind`` decides the file format: dense_classification reads (H, W) class indices with -1
    for ignored pixels; dense_regression reads (H, W, C) floats, 0 in every channel = invalid.
    ``unit``: the vectors have unit length (normals), restored after resizing.
    """

    info: TaskInfo
    folder: str
    unit: bool = False


def check_root(dataset: str, root: object) -> Path:
    """``root`` as a Path to an existing folder; DataNotFoundError otherwise."""
    if not isinstance(root, (str, Path)) or not str(root):
        raise MtnasError(f"dataset {dataset!r}: root must be a folder path, got {root!r}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(
            f"dataset {dataset!r}: root {str(path)!r} is not a folder; set dataset.args.root in the search "
            "space to where the data is (nothing is downloaded)"
        )
    return path


#: The largest image side a loader resizes to.
MAX_SIDE = 8192


def check_size(dataset: str, name: str, value: object) -> tuple[int, int] | None:
    """None, an int side or an [height, width] pair, as (height, width)."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        side = check_int(dataset, name, value, minimum=1, maximum=MAX_SIDE)
        return side, side
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        return check_int(dataset, f"{name}[0]", value[0], minimum=1, maximum=MAX_SIDE), check_int(
            dataset, f"{name}[1]", value[1], minimum=1, maximum=MAX_SIDE
        )
    raise MtnasError(f"dataset {dataset!r}: {name} must be an int or [height, width], got {short_repr(value)}")


def check_limit(dataset: str, limit: object) -> int | None:
    return None if limit is None else check_int(dataset, "limit", limit, minimum=1)


# -- resizing (N, C, H, W) float tensors ---------------------------------------------------------


def resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Shrink by area averaging (each output pixel the mean of the input pixels it covers), enlarge
    bilinearly; either way the values stay within the input's range."""
    if tuple(x.shape[-2:]) == size:
        return x
    if size[0] <= x.shape[-2] and size[1] <= x.shape[-1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest neighbour (pixel centres) of (N, H, W) class indices; ignored pixels stay ignored."""
    if tuple(labels.shape[-2:]) == size:
        return labels
    return F.interpolate(labels[:, None].double(), size=size, mode="nearest-exact")[:, 0].round().long()


def resize_masked(x: torch.Tensor, size: tuple[int, int], *, unit: bool = False) -> torch.Tensor:
    """Resize values with invalid pixels (0 in every channel) left out of the averages.

    Each output pixel is the weighted mean of the valid input pixels under it (normalised
    convolution); it is invalid (0) when less than half its weight falls on valid pixels (when
    shrinking: less than half the pixels it covers are valid). With
    ``unit``, vectors are renormalised; one that averages out to ~0 length becomes invalid.
    """
    if tuple(x.shape[-2:]) == size:
        return x
    valid = (x != 0).any(dim=1, keepdim=True).to(x.dtype)  # (N, 1, H, W)
    weight = resize_images(valid, size)
    out = resize_images(x * valid, size) / weight.clamp_min(1e-6)
    keep = weight >= 0.5
    if unit:
        norm = out.norm(dim=1, keepdim=True)
        keep &= norm > 1e-3
        out = out / norm.clamp_min(1e-3)
    return torch.where(keep, out, torch.zeros((), dtype=x.dtype))


# -- the .npy layout --------------------------------------------------------------------------


def _sample_ids(dataset: str, folder: Path) -> list[int]:
    """Sample numbers of ``folder/<N>.npy``, sorted; errors name a folder or file that does not fit."""
    if not folder.is_dir():
        raise DataNotFoundError(f"dataset {dataset!r}: missing folder {str(folder)!r}")
    ids = []
    for path in folder.glob("*.npy"):
        if not path.stem.isdigit():
            raise MtnasError(f"dataset {dataset!r}: {str(path)!r}: expected files named <N>.npy (N = 0, 1, ...)")
        ids.append(int(path.stem))
    if not ids:
        raise MtnasError(f"dataset {dataset!r}: no <N>.npy files in {str(folder)!r}")
    return sorted(ids)


def _check_complete(dataset: str, folder: Path, ids: Sequence[int]) -> None:
    """Every sample of the split has its file in ``folder``."""
    if not folder.is_dir():
        raise DataNotFoundError(f"dataset {dataset!r}: missing folder {str(folder)!r}")
    present = {p.name for p in folder.glob("*.npy")}
    for i in ids:
        if f"{i}.npy" not in present:
            raise MtnasError(
                f"dataset {dataset!r}: missing file {str(folder / f'{i}.npy')!r} (image/{i}.npy has no {folder.name})"
            )


def _load(dataset: str, path: Path) -> np.ndarray:
    try:
        regular_file(path, ".npy array")  # a FIFO named 3.npy would block np.load
    except MtnasError as exc:
        raise MtnasError(f"dataset {dataset!r}: {exc}") from None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise MtnasError(f"dataset {dataset!r}: {str(path)!r} is not a readable .npy array: {exc}") from None


def _read_chunk(
    dataset: str, folder: Path, ids: Sequence[int], channels: int | None, floating: bool, hw: tuple[int, int] | None
) -> np.ndarray:
    """Stack ``folder/<i>.npy`` for ``ids``: (n, H, W) when ``channels`` is None, else (n, H, W, C).

    Each array must be (H, W) (labels; a trailing 1 is allowed) or (H, W, C) (C = 1 may be
    dropped), all of the same (H, W) = ``hw`` when given; ``floating``: a float dtype.
    """
    arrays = []
    for i in ids:
        path = folder / f"{i}.npy"
        a = _load(dataset, path)
        shape = a.shape
        if channels is None and a.ndim == 3 and shape[2] == 1:
            a = a[..., 0]
        elif channels == 1 and a.ndim == 2:
            a = a[..., None]
        want_ndim = 2 if channels is None else 3
        expected = "H x W" if channels is None else f"H x W x {channels}"
        if hw is not None:
            expected += f" with H x W = {hw[0]} x {hw[1]}"
        bad_shape = a.ndim != want_ndim or (channels is not None and a.shape[2] != channels)
        bad_shape = bad_shape or (hw is not None and tuple(a.shape[:2]) != hw)
        bad_dtype = not np.issubdtype(a.dtype, np.floating if floating else np.number) or a.dtype == np.bool_
        if bad_shape or bad_dtype:
            kind = "float" if floating else "numeric"
            raise MtnasError(
                f"dataset {dataset!r}: {str(path)!r}: expected a {kind} array of shape {expected}, "
                f"got {a.dtype} of shape {shape}"
            )
        hw = tuple(a.shape[:2])
        arrays.append(a)
    return np.stack(arrays)


def _first_bad(dataset: str, folder: Path, ids: Sequence[int], bad: np.ndarray, what: str) -> None:
    """Raise naming the first sample with a bad value; ``bad`` is (n, ...) bool."""
    per_sample = bad.reshape(len(bad), -1).any(axis=1)
    if per_sample.any():
        path = folder / f"{ids[int(per_sample.argmax())]}.npy"
        raise MtnasError(f"dataset {dataset!r}: {str(path)!r}: {what}")


def _read_split(
    dataset: str, split_dir: Path, ids: Sequence[int], fields: Sequence[NpyField], resize: tuple[int, int] | None
) -> TaskData:
    """Inputs (N, 3, H, W) float32 and one target per field, read in chunks and resized."""
    parts: dict[str, list[torch.Tensor]] = {"image": [], **{f.info.name: [] for f in fields}}
    hw: tuple[int, int] | None = None
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        folder = split_dir / "image"
        image = _read_chunk(dataset, folder, chunk, 3, True, hw)
        hw = image.shape[1:3]
        _first_bad(dataset, folder, chunk, ~np.isfinite(image), "the image has NaN or infinite values")
        size = resize or hw
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2), dtype=np.float32))
        parts["image"].append(resize_images(x, size))
        for field in fields:
            info, folder = field.info, split_dir / field.folder
            if info.kind == "dense_classification":
                labels = _read_chunk(dataset, folder, chunk, None, False, hw)
                bad = (labels != np.round(labels)) | (labels < -1) | (labels >= info.num_outputs)
                _first_bad(
                    dataset, folder, chunk, bad, f"expected class indices 0..{info.num_outputs - 1} or -1 (ignored)"
                )
                labels = torch.from_numpy(labels.astype(np.int64))
                parts[info.name].append(resize_labels(labels.masked_fill(labels < 0, IGNORE_INDEX), size))
            else:
                values = _read_chunk(dataset, folder, chunk, info.num_outputs, True, hw)
                _first_bad(
                    dataset, folder, chunk, ~np.isfinite(values), "NaN or infinite values (mark invalid pixels 0)"
                )
                t = torch.from_numpy(np.ascontiguousarray(values.transpose(0, 3, 1, 2), dtype=np.float32))
                parts[info.name].append(resize_masked(t, size, unit=field.unit))
    tensors = {name: torch.cat(chunks) for name, chunks in parts.items()}
    return TaskData(tensors.pop("image"), tensors)


def load_npy_benchmark(
    dataset: str,
    root: object,
    fields: Sequence[NpyField],
    *,
    resize: object,
    limit: object,
    val_fraction: object,
    seed: object,
) -> DatasetBundle:
    """A benchmark in the ``.npy`` layout (see the module docstring) as a ``DatasetBundle``.

    Args:
        dataset: its registered name, for error messages.
        root: the folder holding ``train/`` and ``val/`` (and optionally ``test/``).
        fields: the tasks; inputs are always ``image/``.
        resize: None, or the (height, width) (an int: square) every split is resized to.
        limit: None, or the most samples kept per split (the first ones, in sample order).
        val_fraction: share of ``train/`` carved out as validation (seeded); default 0.1. Only for
            the train + val layout: with a ``test/`` folder the validation split is ``val/``.
        seed: fixes which training samples become validation.
    """
    path = check_root(dataset, root)
    size = check_size(dataset, "resize", resize)
    limit = check_limit(dataset, limit)
    seed = check_seed(dataset, seed)
    three_splits = (path / "test").is_dir()
    if three_splits and val_fraction is not None:
        raise MtnasError(
            f"dataset {dataset!r}: {str(path / 'test')!r} exists, so val/ is the validation split; "
            "val_fraction applies only to a train + val layout (remove it)"
        )
    fraction = 0.1 if val_fraction is None else check_float(dataset, "val_fraction", val_fraction, minimum=0.0)
    if not three_splits and not 0.0 < fraction < 1.0:
        raise MtnasError(f"dataset {dataset!r}: val_fraction must be between 0 and 1 (exclusive), got {fraction}")

    if three_splits:
        folders = {"train": path / "train", "val": path / "val", "test": path / "test"}
    else:  # MTAN / LibMTL: their val split is the test set; validation comes out of train
        folders = {"train": path / "train", "val": path / "train", "test": path / "val"}
    ids = {split: _sample_ids(dataset, folder / "image") for split, folder in folders.items()}
    if not three_splits:
        pool = np.asarray(ids["train"])
        if len(pool) < 2:
            raise MtnasError(
                f"dataset {dataset!r}: {str(folders['train'] / 'image')!r} needs >= 2 samples to carve val"
            )
        n_val = min(max(1, round(fraction * len(pool))), len(pool) - 1)
        order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5A1,))).permutation(len(pool))
        ids["val"] = sorted(pool[order[:n_val]].tolist())
        ids["train"] = sorted(pool[order[n_val:]].tolist())
    splits = {}
    for split, folder in folders.items():
        chosen = ids[split][:limit] if limit is not None else ids[split]
        for field in fields:
            _check_complete(dataset, folder / field.folder, chosen)
        splits[split] = _read_split(dataset, folder, chosen, fields, size)
    shapes = {split: tuple(data.inputs.shape[-2:]) for split, data in splits.items()}
    if len(set(shapes.values())) > 1:
        raise MtnasError(
            f"dataset {dataset!r}: the splits' images differ in size {shapes}; give resize: [height, width]"
        )
    return DatasetBundle(**splits, tasks=tuple(f.info for f in fields))
