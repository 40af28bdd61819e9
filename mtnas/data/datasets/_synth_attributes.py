"""``synth_attributes``: a generated stand-in of CelebA's shape, many binary attributes of one image.

Each input is a 3 x size x size image: a sum of ``groups`` random smooth patterns with random
strengths, plus noise. Attribute j belongs to group ``j % groups`` and is 1 when a fixed random
linear read-out of its group's pattern strengths exceeds its median, so attributes of one group
depend on the same image content and attributes of different groups on unrelated content: the
grouping is ``planted_groups``. With 40 attributes it has CelebA's task count at a size a CPU
searches in minutes (``benchmarks/task_scaling.py``, the 40-task tests).
"""

from __future__ import annotations

import numpy as np
import torch

from mtnas.data._bundle import DatasetBundle, TaskData, TaskInfo
from mtnas.data.datasets._common import check_int, check_seed, check_total, streams
from mtnas.data.datasets._registry import DATASETS

__all__ = ["make_synth_attributes"]

_LATENTS = 4  # pattern strengths per group


@DATASETS.register("synth_attributes")
def make_synth_attributes(
    *, n_train: int = 2000, n_val: int = 500, n_test: int = 500, size: int = 16, attributes: int = 40,
    groups: int = 4, seed: int = 0,
) -> DatasetBundle:
    """Images (N, 3, size, size) float32 and ``attributes`` binary classification tasks ``attr_00``...

    Args:
        n_train, n_val, n_test: images per split.
        size: image side in pixels.
        attributes: number of binary tasks.
        groups: how many independent groups of image content the attributes read.
        seed: fixes the patterns, the read-outs and every image.
    """
    sizes = {s: check_int("synth_attributes", f"n_{s}", n, minimum=1)
             for s, n in (("train", n_train), ("val", n_val), ("test", n_test))}
    size = check_int("synth_attributes", "size", size, minimum=4, maximum=4096)
    attributes = check_int("synth_attributes", "attributes", attributes, minimum=1, maximum=10_000)
    groups = min(check_int("synth_attributes", "groups", groups, minimum=1), attributes)
    seed = check_seed("synth_attributes", seed)
    check_total("synth_attributes", (sum(sizes.values()) + groups * _LATENTS) * 3 * size * size
                + sum(sizes.values()) * attributes)
    rngs = streams(seed, ("model",) + tuple(sizes))
    patterns = _patterns(rngs["model"], groups * _LATENTS, size)  # (G*L, 3, S, S)
    readout = rngs["model"].standard_normal((attributes, _LATENTS))
    names = tuple(f"attr_{j:02d}" for j in range(attributes))
    group_of = np.arange(attributes) % groups
    splits, thresholds = {}, None
    for split, n in sizes.items():
        z = rngs[split].standard_normal((n, groups, _LATENTS))  # pattern strengths
        x = np.einsum("np,pchw->nchw", z.reshape(n, -1), patterns) + 0.3 * rngs[split].standard_normal((n, 3, size, size))
        scores = np.einsum("ngl,al->nga", z, readout)[:, group_of, np.arange(attributes)]  # (N, A)
        if thresholds is None:  # medians of the training split: balanced classes
            thresholds = np.median(scores, axis=0)
        labels = (scores > thresholds).astype(np.int64)
        splits[split] = TaskData(torch.from_numpy(x.astype(np.float32)),
                                 {name: torch.from_numpy(labels[:, j].copy()) for j, name in enumerate(names)})
    tasks = tuple(TaskInfo(name, "classification", 2, f"attribute {j} (group {group_of[j]})") for j, name in enumerate(names))
    planted = tuple(tuple(names[j] for j in range(attributes) if group_of[j] == g) for g in range(groups))
    return DatasetBundle(**splits, tasks=tasks, planted_groups=planted)


def _patterns(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """``count`` smooth random images: low-frequency noise upsampled, each of unit norm."""
    coarse = rng.standard_normal((count, 3, 4, 4))
    fine = np.kron(coarse, np.ones((1, 1, -(-size // 4), -(-size // 4))))[:, :, :size, :size]
    fine = fine - fine.mean(axis=(1, 2, 3), keepdims=True)
    return fine / np.linalg.norm(fine.reshape(count, -1), axis=1)[:, None, None, None] * size
