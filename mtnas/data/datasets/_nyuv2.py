"""``nyuv2``: NYU Depth v2 indoor scenes (Silberman et al., 2012) in the preprocessed MTAN layout.

Read from ``ROOT/{train,val}/{image,label,depth,normal}/<N>.npy`` (795 train and 654 test images of
288 x 384 in MTAN's release, also used by LibMTL; see ``_npy_layout`` for the layout, splits and
ignored pixels). Nothing is downloaded: ``root`` points at the data.
"""

from __future__ import annotations

from mtnas.data._bundle import DatasetBundle, TaskInfo
from mtnas.data.datasets._npy_layout import NpyField, load_npy_benchmark
from mtnas.data.datasets._registry import DATASETS

__all__ = ["NYUV2_CLASSES", "NYUV2_FIELDS", "make_nyuv2"]

#: The 13 segmentation classes (Couprie et al., 2013), in label order.
NYUV2_CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)  # fmt: skip

NYUV2_FIELDS = (
    NpyField(
        TaskInfo("segmentation", "dense_classification", 13, ", ".join(NYUV2_CLASSES) + "; -100 = ignored"), "label"
    ),
    NpyField(TaskInfo("depth", "dense_regression", 1, "depth in metres, 0 = invalid"), "depth"),
    NpyField(TaskInfo("normal", "dense_regression", 3, "unit surface normal, 0 = invalid"), "normal", unit=True),
)


@DATASETS.register("nyuv2")
def make_nyuv2(
    *,
    root: str,
    resize: int | list[int] | None = None,
    limit: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
) -> DatasetBundle:
    """NYUv2: inputs (N, 3, H, W) float32 as stored; tasks ``segmentation``, ``depth``, ``normal``.

    Args:
        root: the folder holding ``train/`` and ``val/`` (MTAN's ``val`` is the test split).
        resize: [height, width] (or one int for a square) to resize to, e.g. [72, 96] for a CPU.
        limit: most samples per split, e.g. for a quick try.
        val_fraction: share of ``train/`` held out as validation (default 0.1, seeded).
        seed: picks the validation samples.
    """
    return load_npy_benchmark(
        "nyuv2", root, NYUV2_FIELDS, resize=resize, limit=limit, val_fraction=val_fraction, seed=seed
    )
