"""``cityscapes``: urban street scenes (Cordts et al., 2016) in the preprocessed MTAN layout.

Read from ``ROOT/{train,val}/{image,label_7,depth}/<N>.npy`` (2,975 train and 500 test images of
128 x 256 in MTAN's release, also used by LibMTL; see ``_npy_layout`` for the layout, splits and
ignored pixels). Depth is disparity, 0 where unknown. Nothing is downloaded: ``root`` points at
the data.
"""

from __future__ import annotations

from mtnas.data._bundle import DatasetBundle, TaskInfo
from mtnas.data.datasets._npy_layout import NpyField, load_npy_benchmark
from mtnas.data.datasets._registry import DATASETS

__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_FIELDS", "make_cityscapes"]

#: The 7 segmentation classes: Cityscapes' categories without void, in label order.
CITYSCAPES_CLASSES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")

CITYSCAPES_FIELDS = (
    NpyField(
        TaskInfo("segmentation", "dense_classification", 7, ", ".join(CITYSCAPES_CLASSES) + "; -100 = ignored"),
        "label_7",
    ),
    NpyField(TaskInfo("depth", "dense_regression", 1, "disparity, 0 = invalid"), "depth"),
)


@DATASETS.register("cityscapes")
def make_cityscapes(
    *,
    root: str,
    resize: int | list[int] | None = None,
    limit: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
) -> DatasetBundle:
    """Cityscapes: inputs (N, 3, H, W) float32 as stored; tasks ``segmentation`` and ``depth``.

    Args:
        root: the folder holding ``train/`` and ``val/`` (MTAN's ``val`` is the test split).
        resize: [height, width] (or one int for a square) to resize to, e.g. [64, 128] for a CPU.
        limit: most samples per split, e.g. for a quick try.
        val_fraction: share of ``train/`` held out as validation (default 0.1, seeded).
        seed: picks the validation samples.
    """
    return load_npy_benchmark(
        "cityscapes", root, CITYSCAPES_FIELDS, resize=resize, limit=limit, val_fraction=val_fraction, seed=seed
    )
