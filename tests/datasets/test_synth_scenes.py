"""``synth_scenes``: targets consistent with each other, unit normals, edges at class changes, speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtnas.data import TaskData
from mtnas.data.datasets import make_synth_scenes


@pytest.fixture(scope="module")
def scenes() -> TaskData:
    return make_synth_scenes(n_train=300, n_val=1, n_test=1, seed=4).train


def test_tasks_and_shapes() -> None:
    bundle = make_synth_scenes(n_train=3, n_val=1, n_test=1, size=16, max_objects=5)
    assert [(t.name, t.kind, t.num_outputs) for t in bundle.tasks] == [
        ("segmentation", "dense_classification", 4),
        ("depth", "dense_regression", 1),
        ("normals", "dense_regression", 3),
        ("edges", "dense_classification", 2),
        ("count", "classification", 6),
    ]
    assert bundle.input_shape == (3, 16, 16)


def test_images_are_rgb_in_unit_range(scenes: TaskData) -> None:
    assert scenes.inputs.shape == (300, 3, 32, 32)
    assert float(scenes.inputs.min()) >= 0.0 and float(scenes.inputs.max()) <= 1.0


def test_every_scene_shows_an_object_and_counts_it(scenes: TaskData) -> None:
    seg, count = scenes.targets["segmentation"], scenes.targets["count"]
    assert int(count.min()) >= 1 and int(count.max()) <= 3
    assert set(count.tolist()) == {1, 2, 3}
    for labels, n in zip(seg, count):
        shapes_seen = set(labels.unique().tolist()) - {0}
        assert 1 <= len(shapes_seen) <= int(n)
    assert set(seg.unique().tolist()) == {0, 1, 2, 3}


def test_depth_is_far_on_the_background_and_nearer_on_objects(scenes: TaskData) -> None:
    depth, seg = scenes.targets["depth"][:, 0], scenes.targets["segmentation"]
    assert float(depth.min()) >= 0.0 and float(depth.max()) <= 1.0
    assert torch.all(depth[seg == 0] == 1.0)
    assert torch.all(depth[seg > 0] < 1.0)


def test_normals_are_unit_vectors_facing_the_camera(scenes: TaskData) -> None:
    normals, seg = scenes.targets["normals"], scenes.targets["segmentation"]
    assert torch.allclose(normals.norm(dim=1), torch.ones(()), atol=1e-5)
    assert float(normals[:, 2].min()) >= 0.0
    per_pixel = normals.permute(0, 2, 3, 1)  # (N, H, W, 3)
    assert torch.all(per_pixel[seg != 1] == torch.tensor([0.0, 0.0, 1.0]))  # background, squares, triangles
    sphere = per_pixel[seg == 1]  # (P, 3): circles are spheres, their normals vary
    assert float(sphere[:, 2].min()) < 0.5 and float(sphere[:, 0].min()) < -0.5 and float(sphere[:, 0].max()) > 0.5


def test_edges_are_exactly_where_the_segmentation_changes(scenes: TaskData) -> None:
    seg = scenes.targets["segmentation"].numpy()
    padded = np.pad(seg, ((0, 0), (1, 1), (1, 1)), mode="edge")  # the border has no outside neighbour
    centre = padded[:, 1:-1, 1:-1]
    neighbours = (padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:])
    expected = np.any([n != centre for n in neighbours], axis=0)
    edges = scenes.targets["edges"].numpy()
    assert np.array_equal(edges, expected)
    assert 0 < edges.mean() < 0.5


def test_one_object_at_most() -> None:
    data = make_synth_scenes(n_train=40, n_val=1, n_test=1, max_objects=1).train
    assert torch.all(data.targets["count"] == 1)
