"""``celeba``: CelebA face attributes (Liu et al., 2015, "Deep Learning Face Attributes in the Wild").

Read from the original release under ``ROOT``: ``img_align_celeba/*.jpg`` (aligned and cropped,
178 x 218), ``list_attr_celeba.txt`` (a count line, the 40 attribute names, then ``file v1 .. v40``
with 1 / -1) and ``list_eval_partition.txt`` (``file 0|1|2`` = train / val / test). Each attribute
is a binary classification task; the official partition fixes the splits. Multi-task use follows
Sener & Koltun (2018). Nothing is downloaded: ``root`` points at the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mtnas.core import MtnasError, did_you_mean
from mtnas.data._bundle import DatasetBundle, TaskData, TaskInfo
from mtnas.data.datasets._common import check_seed
from mtnas.data.datasets._npy_layout import DataNotFoundError, check_limit, check_root, check_size
from mtnas.data.datasets._registry import DATASETS

__all__ = ["CELEBA_ATTRIBUTES", "make_celeba"]

#: The 40 attributes, in the order of ``list_attr_celeba.txt``.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

_SPLITS = ("train", "val", "test")  # partition values 0, 1, 2


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataNotFoundError(f"dataset 'celeba': missing file {str(path)!r}")
    return path.read_text().splitlines()


def _read_attributes(path: Path) -> tuple[list[str], np.ndarray]:
    """File names and their (N, 40) labels in {0, 1} (the file's -1 becomes 0)."""
    lines = _lines(path)
    where = f"dataset 'celeba': {str(path)!r}"
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise MtnasError(f"{where}: expected the number of images on line 1, then the 40 attribute names")
    count = int(lines[0])
    names = lines[1].split()
    if tuple(names) != CELEBA_ATTRIBUTES:
        raise MtnasError(f"{where} line 2: expected the 40 CelebA attribute names in order, got {len(names)} names")
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != count:
        raise MtnasError(f"{where}: line 1 says {count} images, the file lists {len(rows)}")
    for i, row in enumerate(rows):
        if len(row) != 1 + len(names):
            raise MtnasError(
                f"{where} line {i + 3}: expected a file name and {len(names)} values, got {len(row) - 1} values"
            )
    values = np.array([row[1:] for row in rows], dtype=str).reshape(len(rows), len(names))  # vectorised checks
    positive, negative = values == "1", values == "-1"
    if not (positive | negative).all():
        bad = int(np.flatnonzero(~(positive | negative).all(axis=1))[0])
        raise MtnasError(f"{where} line {bad + 3}: expected values 1 or -1, got {' '.join(rows[bad][1:])!r}")
    return [row[0] for row in rows], positive.astype(np.int64)


def _read_partition(path: Path) -> dict[str, int]:
    """File name -> 0 (train), 1 (val) or 2 (test)."""
    partition = {}
    for i, line in enumerate(_lines(path)):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise MtnasError(
                f"dataset 'celeba': {str(path)!r} line {i + 1}: expected 'file 0|1|2', got {line.strip()!r}"
            )
        partition[fields[0]] = int(fields[1])
    return partition


def _check_attributes(attributes: object) -> tuple[str, ...]:
    if attributes is None:
        return CELEBA_ATTRIBUTES
    if isinstance(attributes, str) or not isinstance(attributes, Sequence) or not attributes:
        raise MtnasError(
            f"dataset 'celeba': attributes must be a non-empty list of attribute names, got {attributes!r}"
        )
    for name in attributes:
        if name not in CELEBA_ATTRIBUTES:
            raise MtnasError(
                f"dataset 'celeba': unknown attribute {name!r}{did_you_mean(name, CELEBA_ATTRIBUTES)}; "
                f"valid: {', '.join(CELEBA_ATTRIBUTES)}"
            )
    if len(set(attributes)) != len(attributes):
        raise MtnasError(f"dataset 'celeba': attributes repeat: {list(attributes)}")
    return tuple(attributes)


def _read_images(folder: Path, files: Sequence[str], size: tuple[int, int] | None) -> torch.Tensor:
    """(N, 3, H, W) float32 in [0, 1]; resized (bilinear) to ``size`` = (H, W) when given."""
    from PIL import Image  # Pillow comes with matplotlib; imported here as only CelebA decodes JPEGs

    out: np.ndarray | None = None
    for i, name in enumerate(files):
        path = folder / name
        if not path.is_file():
            raise MtnasError(f"dataset 'celeba': missing image {str(path)!r} (listed in list_attr_celeba.txt)")
        try:
            with Image.open(path) as img:
                if size is not None:
                    img.draft("RGB", (size[1], size[0]))  # JPEG: decode at a reduced scale, much faster
                img = img.convert("RGB")
                if size is not None and img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]), Image.BILINEAR)
                pixels = np.asarray(img)
        except OSError as exc:  # includes PIL.UnidentifiedImageError
            raise MtnasError(f"dataset 'celeba': {str(path)!r} is not a readable image: {exc}") from None
        if out is None:
            out = np.empty((len(files), *pixels.shape), dtype=np.uint8)
        elif pixels.shape != out.shape[1:]:
            raise MtnasError(
                f"dataset 'celeba': {str(path)!r} is {pixels.shape[1]} x {pixels.shape[0]}, the first image "
                f"{out.shape[2]} x {out.shape[1]}; give size to resize them all"
            )
        out[i] = pixels
    assert out is not None
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255).contiguous()


@DATASETS.register("celeba")
def make_celeba(
    *,
    root: str,
    attributes: list[str] | None = None,
    size: int | list[int] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> DatasetBundle:
    """CelebA: inputs (N, 3, H, W) float32 in [0, 1]; one 2-class task per attribute (1 = present).

    Args:
        root: the folder holding ``img_align_celeba/`` and the two list files.
        attributes: the attributes to learn, as named in ``CELEBA_ATTRIBUTES`` (default: all 40).
        size: side (or [height, width]) to resize the 218 x 178 images to, e.g. 32 or 64.
        limit: most images per split, the first ones of the partition.
        seed: unused (the official partition fixes the splits); accepted like every dataset's.
    """
    path = check_root("celeba", root)
    chosen = _check_attributes(attributes)
    size = check_size("celeba", "size", size)
    limit = check_limit("celeba", limit)
    check_seed("celeba", seed)
    folder = path / "img_align_celeba"
    if not folder.is_dir():
        raise DataNotFoundError(f"dataset 'celeba': missing folder {str(folder)!r}")
    files, labels = _read_attributes(path / "list_attr_celeba.txt")
    partition_file = path / "list_eval_partition.txt"
    partition = _read_partition(partition_file)
    columns = [CELEBA_ATTRIBUTES.index(name) for name in chosen]
    missing = [f for f in files if f not in partition]
    if missing:
        raise MtnasError(
            f"dataset 'celeba': {str(partition_file)!r} has no split for {missing[0]!r} ({len(missing)} files)"
        )
    split_of = np.array([partition[f] for f in files])
    splits = {}
    for value, split in enumerate(_SPLITS):
        rows = np.flatnonzero(split_of == value)[:limit]
        if len(rows) == 0:
            raise MtnasError(f"dataset 'celeba': {str(partition_file)!r} puts no image in the {split} split ({value})")
        inputs = _read_images(folder, [files[r] for r in rows], size)
        targets = {name: torch.from_numpy(labels[rows, c]) for name, c in zip(chosen, columns)}
        splits[split] = TaskData(inputs, targets)
    shapes = {split: tuple(data.inputs.shape[1:]) for split, data in splits.items()}
    if len(set(shapes.values())) > 1:
        raise MtnasError(f"dataset 'celeba': the splits' images differ in size {shapes}; give size to resize them all")
    tasks = tuple(
        TaskInfo(name, "classification", 2, f"{name.replace('_', ' ')}: 1 present, 0 absent") for name in chosen
    )
    return DatasetBundle(**splits, tasks=tasks)
