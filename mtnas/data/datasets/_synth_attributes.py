"""``synth_attributes``: a generated stand-in of CelebA's shape, many binary attributes of one image.

Each input is a 3 x size x size image: a sum of ``groups * 4`` sinusoidal gratings plus noise.
Each grating has its own orientation, frequency and colour (fixed by the seed), a random phase
and a random strength in [0, 1] per image. Attribute j belongs to group ``j % groups``: it is 1
when a fixed random linear read-out of its group's four grating strengths exceeds its median, so
the attributes of one group read the same four gratings and those of different groups read
unrelated ones. The grouping is ``planted_groups``. With 40 attributes it has CelebA's task count
at a size a CPU searches in minutes (``benchmarks/task_scaling.py``, the 40-task tests).

What is planted, and why the built-in space (``search_spaces/synth_attributes.yaml``) makes the
four groups the best tree by the search's trade-off score:

* a grating's strength is read as the energy of an oriented, coloured pattern of random phase:
  the wide first layers (16 and 32 channels) find it; they hold most of the FLOPs and are shared;
* layer 2 is a bottleneck of 4 channels: room for one group's 4 strengths, not for two groups' 8
  nor for all 16. Tasks of different groups that share it crowd each other out; a branch per
  group from layer 2 on gives each group its own 4 channels;
* a branch of layers 2-4 copies only the narrow layers, so four of them pay for themselves;
  splitting one layer earlier copies the wide layer 1 and does not (the costs, and the figures
  that check it: ``benchmarks/README.md``, "synth_attributes rebuilt").

``python -m benchmarks.recovery_suite --truth --cases synth_attributes --seeds 4`` checks that
the planted groups split at layer 2 beat every reference tree by the search's trade-off score.

``planted_groups`` lists the four groups, attr_00, attr_04, ... first.
"""

from __future__ import annotations

import numpy as np
import torch

from mtnas.data._bundle import DatasetBundle, TaskData, TaskInfo
from mtnas.data.datasets._common import check_int, check_seed, check_total, streams
from mtnas.data.datasets._registry import DATASETS

__all__ = ["make_synth_attributes"]

_LATENTS = 4  # gratings per group
_NOISE = 0.3  # standard deviation of the pixel noise
#: Range of the gratings' frequencies, in cycles per image side.
_CYCLES = (2.0, 5.0)
_ORIENTATIONS = 8  # orientations, evenly spaced over 180 degrees


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
        groups: how many independent groups of gratings (four each) the attributes read.
        seed: fixes the gratings, the read-outs and every image.
    """
    sizes = {s: check_int("synth_attributes", f"n_{s}", n, minimum=1)
             for s, n in (("train", n_train), ("val", n_val), ("test", n_test))}
    size = check_int("synth_attributes", "size", size, minimum=4, maximum=4096)
    attributes = check_int("synth_attributes", "attributes", attributes, minimum=1, maximum=10_000)
    groups = min(check_int("synth_attributes", "groups", groups, minimum=1), attributes)
    count = groups * _LATENTS
    seed = check_seed("synth_attributes", seed)
    check_total("synth_attributes", (sum(sizes.values()) + 2 * count) * 3 * size * size
                + sum(sizes.values()) * (attributes + 2 * count))
    rngs = streams(seed, ("model",) + tuple(sizes))
    sine, cosine = _gratings(rngs["model"], count, size)  # (G*L, 3*S*S) each: the phase-0 and phase-90 patterns
    readout = rngs["model"].standard_normal((attributes, _LATENTS))
    names = tuple(f"attr_{j:02d}" for j in range(attributes))
    group_of = np.arange(attributes) % groups
    splits, thresholds = {}, None
    for split, n in sizes.items():
        rng = rngs[split]
        strength = rng.uniform(0.0, 1.0, (n, groups, _LATENTS))
        phase = rng.uniform(0.0, 2 * np.pi, (n, count))
        flat = strength.reshape(n, count)  # sin(p + phase) = sin(p) cos(phase) + cos(p) sin(phase)
        x = (flat * np.cos(phase)) @ sine + (flat * np.sin(phase)) @ cosine
        x = x.reshape(n, 3, size, size) + _NOISE * rng.standard_normal((n, 3, size, size))
        scores = np.einsum("ngl,al->nga", strength, readout)[:, group_of, np.arange(attributes)]  # (N, A)
        if thresholds is None:  # medians of the training split: balanced classes
            thresholds = np.median(scores, axis=0)
        labels = (scores > thresholds).astype(np.int64)
        splits[split] = TaskData(torch.from_numpy(x.astype(np.float32)),
                                 {name: torch.from_numpy(labels[:, j].copy()) for j, name in enumerate(names)})
    tasks = tuple(TaskInfo(name, "classification", 2, f"attribute {j} (group {group_of[j]})") for j, name in enumerate(names))
    planted = tuple(tuple(names[j] for j in range(attributes) if group_of[j] == g) for g in range(groups))
    return DatasetBundle(**splits, tasks=tasks, planted_groups=planted)


def _gratings(rng: np.random.Generator, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` coloured gratings at phase 0 and at phase 90 degrees, each (count, 3 * size * size).

    Grating k runs along orientation theta_k (``_ORIENTATIONS`` evenly spaced angles, each used
    about equally often, in random order) at f_k cycles per image side (uniform in ``_CYCLES``),
    in colour c_k (a random unit vector over the three channels): pixel (u, v) of channel ch is
    ``c_k[ch] * sin(2 pi f_k / size * (u cos theta_k + v sin theta_k) + phase)``.
    """
    per = -(-count // _ORIENTATIONS)
    theta = rng.permutation(np.repeat(np.arange(_ORIENTATIONS) * np.pi / _ORIENTATIONS, per))[:count]
    cycles = rng.uniform(*_CYCLES, size=count)
    colour = rng.standard_normal((count, 3))
    colour /= np.linalg.norm(colour, axis=1, keepdims=True)
    u, v = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")  # (S, S) row and column indices
    arg = (np.cos(theta)[:, None, None] * u + np.sin(theta)[:, None, None] * v) * (2 * np.pi * cycles[:, None, None] / size)
    return tuple(np.einsum("kc,khw->kchw", colour, wave(arg)).reshape(count, -1) for wave in (np.sin, np.cos))
