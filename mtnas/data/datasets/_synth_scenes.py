"""``synth_scenes``: procedurally rendered RGB scenes with dense and image-level tasks.

A scene is a background colour gradient (the far plane, depth 1) with 1..``max_objects`` shapes in
front of it: circles (rendered as spheres, so their depth and normals vary), squares and triangles
(flat, facing the camera, each at its own depth, randomly rotated). A z-buffer decides what each
pixel shows, so nearer objects occlude farther ones. Spheres are shaded by one fixed light, so the
image carries a cue to the normals.

Coordinates: x to the right (columns), y down (rows), z towards the camera; lengths are in units
of the image side, so depth is in [0, 1] as is. Every object's centre is a pixel centre, which
guarantees that every scene shows at least one object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from mtnas.core import MtnasError
from mtnas.data._bundle import DatasetBundle, TaskData, TaskInfo
from mtnas.data.datasets._common import check_float, check_int, check_seed, check_total, streams
from mtnas.data.datasets._registry import DATASETS

__all__ = ["SHAPES", "make_synth_scenes"]

#: Segmentation class of each shape; class 0 is the background.
SHAPES = ("circle", "square", "triangle")
_RADIUS = (0.1, 0.25)  # object size (circle radius) as a fraction of the image side
_NEAR, _FAR = 0.35, 0.9  # range of object depths (sphere fronts come up to _RADIUS[1] nearer)
_SQUARE_HALF_SIDE = 0.8  # relative to the object's radius: similar areas for all three shapes
_TRIANGLE_CIRCUMRADIUS = 1.2
_CHUNK = 256  # scenes rendered at once, to bound the memory of the (CHUNK, K, H, W) arrays
_LIGHT = np.array([-0.4, -0.5, 0.77]) / np.linalg.norm([-0.4, -0.5, 0.77])  # from the upper left


def _tasks(max_objects: int) -> tuple[TaskInfo, ...]:
    return (
        TaskInfo("segmentation", "dense_classification", 1 + len(SHAPES), "background, " + ", ".join(SHAPES)),
        TaskInfo("depth", "dense_regression", 1, "distance from the camera, background (far plane) = 1"),
        TaskInfo("normals", "dense_regression", 3, "unit surface normal (x right, y down, z to the camera)"),
        TaskInfo("edges", "dense_classification", 2, "pixel touches a different segmentation class (4-neighbour)"),
        TaskInfo("count", "classification", max_objects + 1, "number of objects with a visible pixel"),
    )


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Colours (..., 3) from hue, saturation and value in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)


class _Scenes(NamedTuple):
    """Random parameters of N scenes with K object slots (slots past ``n_objects`` are unused)."""

    n_objects: np.ndarray  # (N,) int
    shape: np.ndarray  # (N, K) segmentation class, 1..len(SHAPES)
    col: np.ndarray  # (N, K) centre pixel
    row: np.ndarray  # (N, K)
    radius: np.ndarray  # (N, K) fraction of the image side
    angle: np.ndarray  # (N, K) rotation, radians
    depth0: np.ndarray  # (N, K) depth of a flat shape, of a sphere's rim
    colour: np.ndarray  # (N, K, 3)
    bg_colour: np.ndarray  # (N, 2, 3) the two ends of the background gradient
    bg_direction: np.ndarray  # (N,) direction of the gradient, radians

    def rows(self, index: slice) -> _Scenes:
        return _Scenes(*(field[index] for field in self))


def _draw(rng: np.random.Generator, n: int, size: int, max_objects: int) -> _Scenes:
    """Every random number of ``n`` scenes, drawn in a fixed order for all slots (used or not)."""
    k = max_objects
    lo = int(0.15 * size)
    hi = max(int(np.ceil(0.85 * size)), lo + 1)
    n_objects = rng.integers(1, k + 1, size=n)
    shape = rng.integers(1, len(SHAPES) + 1, size=(n, k))
    col, row = rng.integers(lo, hi, size=(2, n, k))
    radius = rng.uniform(*_RADIUS, size=(n, k))
    angle = rng.uniform(0, 2 * np.pi, size=(n, k))
    depth0 = rng.uniform(_NEAR, _FAR, size=(n, k))
    hue, saturation, value = rng.uniform(size=(n, k)), rng.uniform(0.5, 1.0, (n, k)), rng.uniform(0.7, 1.0, (n, k))
    grey = rng.uniform(0.15, 0.6, size=(n, 2, 1))  # a dim, slightly tinted background
    bg_colour = np.clip(grey + rng.uniform(-0.08, 0.08, size=(n, 2, 3)), 0, 1)
    bg_direction = rng.uniform(0, 2 * np.pi, size=n)
    colour = _hsv_to_rgb(hue, saturation, value)
    return _Scenes(n_objects, shape, col, row, radius, angle, depth0, colour, bg_colour, bg_direction)


def _zbuffer(scenes: _Scenes, size: int) -> tuple[np.ndarray, np.ndarray]:
    """What each pixel shows, nearest surface first; the (N, K, H, W) geometry is single precision.

    Returns:
        visible: (N, H, W), 0 for the background or 1 + the slot of the object shown.
        depth: (N, 1, H, W) of the surface shown; the background is the far plane, 1.
    """
    n, k = scenes.shape.shape
    f32 = np.float32
    coords = ((np.arange(size) + 0.5) / size).astype(f32)
    dx = coords[None, None, None, :] - ((scenes.col + 0.5) / size).astype(f32)[..., None, None]  # (N, K, H, W)
    dy = coords[None, None, :, None] - ((scenes.row + 0.5) / size).astype(f32)[..., None, None]
    r = scenes.radius.astype(f32)[..., None, None]
    cos, sin = np.cos(scenes.angle).astype(f32)[..., None, None], np.sin(scenes.angle).astype(f32)[..., None, None]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos  # object-aligned coordinates

    d2 = dx**2 + dy**2
    circle = d2 <= r**2
    square = np.maximum(np.abs(u), np.abs(v)) <= _SQUARE_HALF_SIDE * r
    # Equilateral triangle: inside all three edges, each at the inradius (half the circumradius).
    inradius = f32(_TRIANGLE_CIRCUMRADIUS / 2) * r
    edge_normals = np.deg2rad([90.0, 210.0, 330.0])
    triangle = np.logical_and.reduce([u * f32(np.cos(a)) + v * f32(np.sin(a)) <= inradius for a in edge_normals])
    cls = scenes.shape[..., None, None]
    inside = np.where(cls == 1, circle, np.where(cls == 2, square, triangle))
    inside &= (np.arange(k) < scenes.n_objects[:, None])[..., None, None]  # unused slots draw nothing

    bulge = np.sqrt(np.maximum(r**2 - d2, f32(0)))  # a sphere's surface, in front of its rim
    surface = scenes.depth0.astype(f32)[..., None, None] - np.where(cls == 1, bulge, f32(0))
    far_plane = np.ones((n, 1, size, size), f32)
    z = np.concatenate([far_plane, np.where(inside, surface, f32(np.inf))], axis=1)  # (N, 1 + K, H, W)
    return np.argmin(z, axis=1), z.min(axis=1, keepdims=True)


def _normals(scenes: _Scenes, pick: Callable[[np.ndarray], np.ndarray], sphere: np.ndarray, size: int) -> np.ndarray:
    """Unit normals (N, 3, H, W) from the depth surface's gradient, (dD/dx, dD/dy, 1) normalised.

    For a sphere of radius r that is (dx, dy, bulge) / r; flat shapes and the background face the
    camera. ``pick`` maps a per-slot array (N, K) to the value of the visible slot per pixel.
    """
    coords = (np.arange(size) + 0.5) / size
    dx = coords[None, None, :] - pick((scenes.col + 0.5) / size)  # (N, H, W)
    dy = coords[None, :, None] - pick((scenes.row + 0.5) / size)
    bulge = np.sqrt(np.maximum(pick(scenes.radius) ** 2 - dx**2 - dy**2, 0.0))
    facing = np.array([0.0, 0.0, 1.0])[:, None, None]
    normals = np.where(sphere[:, None], np.stack([dx, dy, bulge], axis=1), facing)
    return normals / np.linalg.norm(normals, axis=1, keepdims=True)


def _background(scenes: _Scenes, size: int) -> np.ndarray:
    """Linear colour gradients (N, 3, H, W) between the two background colours."""
    coords = (np.arange(size) + 0.5) / size - 0.5
    cos, sin = np.cos(scenes.bg_direction)[:, None, None], np.sin(scenes.bg_direction)[:, None, None]
    t = np.clip((cos * coords[None, None, :] + sin * coords[None, :, None]) / np.sqrt(2) + 0.5, 0, 1)[:, None]
    return scenes.bg_colour[:, 0, :, None, None] * (1 - t) + scenes.bg_colour[:, 1, :, None, None] * t


def _boundaries(segmentation: np.ndarray) -> np.ndarray:
    """1 where a pixel has a 4-neighbour of another class, else 0; (N, H, W) int64."""
    changed = np.zeros(segmentation.shape, dtype=bool)
    horizontal = segmentation[:, :, 1:] != segmentation[:, :, :-1]
    vertical = segmentation[:, 1:, :] != segmentation[:, :-1, :]
    changed[:, :, 1:] |= horizontal
    changed[:, :, :-1] |= horizontal
    changed[:, 1:, :] |= vertical
    changed[:, :-1, :] |= vertical
    return changed.astype(np.int64)


def _render(scenes: _Scenes, size: int) -> dict[str, np.ndarray]:
    """The input and every target of ``scenes``, as numpy arrays."""
    n, k = scenes.shape.shape
    visible, depth = _zbuffer(scenes, size)
    scene = np.arange(n)[:, None, None]

    def pick(per_slot: np.ndarray) -> np.ndarray:
        """Per-pixel value (N, H, W) of the visible slot's entry in ``per_slot`` (N, K); 0 on the background."""
        return np.concatenate([np.zeros((n, 1)), per_slot], axis=1)[scene, visible]

    segmentation = pick(scenes.shape).astype(np.int64)
    normals = _normals(scenes, pick, segmentation == 1, size)
    shading = 0.3 + 0.7 * np.clip(np.einsum("nchw,c->nhw", normals, _LIGHT), 0, 1)[:, None]  # (N, 1, H, W)
    colour = np.stack([pick(scenes.colour[..., c]) for c in range(3)], axis=1)  # (N, 3, H, W)
    image = np.where((visible > 0)[:, None], colour * shading, _background(scenes, size))
    count = sum(np.any(visible == slot, axis=(1, 2)) for slot in range(1, k + 1))
    return {
        "inputs": image.astype(np.float32),
        "segmentation": segmentation,
        "depth": depth,
        "normals": normals.astype(np.float32),
        "edges": _boundaries(segmentation),
        "count": np.asarray(count, dtype=np.int64),
    }


@DATASETS.register("synth_scenes")
def make_synth_scenes(
    *, n_train: int = 2000, n_val: int = 500, n_test: int = 500, size: int = 32, max_objects: int = 3, seed: int = 0,
    drop_labels: float = 0.0,
) -> DatasetBundle:
    """Rendered scenes: inputs (N, 3, size, size) float32 in [0, 1]; five tasks.

    Tasks: ``segmentation`` (background + 3 shapes), ``depth`` (1 channel, [0, 1]), ``normals``
    (3 channels, unit length), ``edges`` (2 classes) and ``count`` (visible objects, 1..max_objects,
    with ``max_objects + 1`` classes so the class is the count itself).

    Args:
        n_train, n_val, n_test: scenes per split.
        size: image side in pixels.
        max_objects: most objects placed in one scene (at least one is always placed).
        seed: fixes every scene; each split has its own random stream.
        drop_labels: the fraction of (scene, task) labels removed at random in every split, to
            exercise partial labels: ``TaskData.masks`` marks what is left (every scene keeps at
            least one label).
    """
    sizes = {
        split: check_int("synth_scenes", f"n_{split}", n, minimum=1)
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test))
    }
    size = check_int("synth_scenes", "size", size, minimum=8, maximum=4096)
    max_objects = check_int("synth_scenes", "max_objects", max_objects, minimum=1, maximum=1000)
    seed = check_seed("synth_scenes", seed)
    check_total("synth_scenes", sum(sizes.values()) * (12 * size * size + max_objects))  # inputs, dense targets
    drop_labels = check_float("synth_scenes", "drop_labels", drop_labels, minimum=0.0)
    if drop_labels >= 1.0:
        raise MtnasError(f"dataset 'synth_scenes': drop_labels must be below 1 (a fraction), got {drop_labels}")
    rngs = streams(seed, tuple(sizes))
    drops = streams(seed + 1, tuple(sizes))
    splits = {}
    for split, n in sizes.items():
        scenes = _draw(rngs[split], n, size, max_objects)
        chunks = [_render(scenes.rows(slice(i, i + _CHUNK)), size) for i in range(0, n, _CHUNK)]
        arrays = {name: torch.from_numpy(np.concatenate([c[name] for c in chunks])) for name in chunks[0]}
        inputs = arrays.pop("inputs")
        splits[split] = TaskData(inputs, arrays, _label_masks(drops[split], n, tuple(arrays), drop_labels))
    return DatasetBundle(**splits, tasks=_tasks(max_objects))


def _label_masks(rng: np.random.Generator, n: int, tasks: tuple[str, ...], fraction: float) -> dict[str, torch.Tensor]:
    """Which (scene, task) labels survive when ``fraction`` of them are dropped; none dropped: no masks."""
    if fraction == 0:
        return {}
    keep = rng.random((n, len(tasks))) >= fraction
    bare = np.flatnonzero(~keep.any(axis=1))  # a scene with no label left keeps one at random
    keep[bare, rng.integers(len(tasks), size=len(bare))] = True
    return {task: torch.from_numpy(keep[:, i].copy()) for i, task in enumerate(tasks)}
