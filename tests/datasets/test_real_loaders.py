"""Real benchmark loaders (NYUv2, Cityscapes, CelebA) on tiny fakes of their on-disk layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtnas.core import MtnasError
from mtnas.data import DatasetBundle
from mtnas.data.datasets import CELEBA_ATTRIBUTES, IGNORE_INDEX, DataNotFoundError, build_dataset
from mtnas.model import BranchedNet
from mtnas.nn import get_loss
from mtnas.space import BUILTIN_DIR, load_resolved, space_from_dict
from mtnas.train import evaluate
from mtnas.tree import BranchingTree

H, W = 16, 24
NPY_FOLDERS = {"nyuv2": ("label", 13, True), "cityscapes": ("label_7", 7, False)}  # seg folder, classes, normals


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.normal(size=(*shape, 3)).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def write_npy_layout(root: Path, dataset: str, splits: dict[str, int] | None = None, seed: int = 0) -> Path:
    """MTAN-style files: image float32 HxWx3, labels float32 with -1, depth HxWx1 and normals HxWx3 with 0s.

    Every sample's image is filled with its own number / 100, so a loaded sample names its file.
    Labels: the top-left 2x2 block is -1; depth and normals: the top-right 2x2 block is 0.
    """
    seg_folder, classes, normals = NPY_FOLDERS[dataset]
    rng = np.random.default_rng(seed)
    for split, n in (splits or {"train": 6, "val": 4}).items():
        for folder in ("image", seg_folder, "depth", *(("normal",) if normals else ())):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = rng.integers(0, classes, size=(H, W)).astype(np.float32)
            label[:2, :2] = -1
            depth = rng.uniform(0.5, 10.0, size=(H, W, 1)).astype(np.float32)
            depth[:2, -2:] = 0
            np.save(root / split / "image" / f"{i}.npy", np.full((H, W, 3), (i + 1) / 100, np.float32))
            np.save(root / split / seg_folder / f"{i}.npy", label)
            np.save(root / split / "depth" / f"{i}.npy", depth)
            if normals:
                normal = _unit(rng, (H, W))
                normal[:2, -2:] = 0
                np.save(root / split / "normal" / f"{i}.npy", normal)
    return root


@pytest.fixture(scope="module")
def nyuv2_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_npy_layout(tmp_path_factory.mktemp("nyuv2"), "nyuv2")


def _sample_numbers(inputs: torch.Tensor) -> list[int]:
    """The file number of each loaded sample (its image is filled with (number + 1) / 100)."""
    return [round(float(x[0, 0, 0]) * 100) - 1 for x in inputs]


def _check_contract(bundle: DatasetBundle) -> None:
    """The dataset contract (tests/datasets/test_contract.py), with ignored pixels allowed."""
    for split in (bundle.train, bundle.val, bundle.test):
        assert split.inputs.dtype == torch.float32 and tuple(split.inputs.shape[1:]) == bundle.input_shape
        for task in bundle.tasks:
            target = split.targets[task.name]
            if task.kind == "dense_classification":
                assert target.dtype == torch.int64 and target.shape == (len(split), *bundle.input_shape[1:])
                kept = target[target != IGNORE_INDEX]
                assert int(kept.min()) >= 0 and int(kept.max()) < task.num_outputs
            elif task.kind == "dense_regression":
                assert target.dtype == torch.float32
                assert target.shape == (len(split), task.num_outputs, *bundle.input_shape[1:])
                assert torch.isfinite(target).all()
            else:
                assert task.kind == "classification" and target.shape == (len(split),)
                assert set(target.unique().tolist()) <= set(range(task.num_outputs))


# -- NYUv2 and Cityscapes ------------------------------------------------------------------------


def test_nyuv2_tasks_splits_and_values(nyuv2_root: Path) -> None:
    bundle = build_dataset("nyuv2", {"root": str(nyuv2_root), "val_fraction": 0.5, "seed": 1})
    _check_contract(bundle)
    assert [(t.name, t.kind, t.num_outputs) for t in bundle.tasks] == [
        ("segmentation", "dense_classification", 13),
        ("depth", "dense_regression", 1),
        ("normal", "dense_regression", 3),
    ]
    assert bundle.input_shape == (3, H, W)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (3, 3, 4)
    # val is carved from train/, disjoint; the test split is val/ (MTAN's val is the test set)
    train, val = _sample_numbers(bundle.train.inputs), _sample_numbers(bundle.val.inputs)
    assert sorted(train + val) == list(range(6)) and not set(train) & set(val)
    assert _sample_numbers(bundle.test.inputs) == [0, 1, 2, 3]
    # values as stored, channels first; -1 labels become the ignore index
    label = np.load(nyuv2_root / "val" / "label" / "2.npy")
    expected = torch.from_numpy(label).long().masked_fill(torch.from_numpy(label) < 0, IGNORE_INDEX)
    assert torch.equal(bundle.test.targets["segmentation"][2], expected)
    assert torch.all(bundle.test.targets["segmentation"][:, :2, :2] == IGNORE_INDEX)
    normal = np.load(nyuv2_root / "val" / "normal" / "3.npy")
    assert torch.equal(bundle.test.targets["normal"][3], torch.from_numpy(normal).permute(2, 0, 1))
    depth = np.load(nyuv2_root / "val" / "depth" / "0.npy")
    assert torch.equal(bundle.test.targets["depth"][0], torch.from_numpy(depth).permute(2, 0, 1))


def test_validation_split_is_seeded_and_default_is_a_tenth(nyuv2_root: Path) -> None:
    def val_of(seed: int, fraction: float = 0.5) -> list[int]:
        return _sample_numbers(
            build_dataset("nyuv2", {"root": nyuv2_root, "val_fraction": fraction, "seed": seed}).val.inputs
        )

    assert val_of(1) == val_of(1)
    assert len({tuple(val_of(s)) for s in range(5)}) > 1
    default = build_dataset("nyuv2", {"root": nyuv2_root})
    assert (len(default.train), len(default.val)) == (5, 1)  # at least one validation sample


def test_limit_caps_every_split(nyuv2_root: Path) -> None:
    bundle = build_dataset("nyuv2", {"root": nyuv2_root, "limit": 2, "val_fraction": 0.5})
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (2, 2, 2)
    assert _sample_numbers(bundle.test.inputs) == [0, 1]


def test_resize_keeps_ignored_and_invalid_pixels(nyuv2_root: Path) -> None:
    full = build_dataset("nyuv2", {"root": nyuv2_root})
    half = build_dataset("nyuv2", {"root": nyuv2_root, "resize": [8, 12]})
    _check_contract(half)
    assert half.input_shape == (3, 8, 12)
    assert torch.allclose(half.test.inputs, full.test.inputs[:, :, :8, :12])  # constant images stay constant
    seg = half.test.targets["segmentation"]
    assert torch.all(seg[:, 0, 0] == IGNORE_INDEX)  # the ignored 2x2 block became one ignored pixel
    assert set(seg.unique().tolist()) <= set(full.test.targets["segmentation"].unique().tolist())
    depth, normal = half.test.targets["depth"], half.test.targets["normal"]
    assert torch.all(depth[:, 0, 0, -1] == 0) and torch.all(normal[:, :, 0, -1] == 0)  # invalid stays invalid
    assert torch.all(depth[:, 0, 1:] > 0)  # no valid pixel is dragged towards 0
    # a valid pixel is the mean of its 2x2 block; normals are unit length again
    block = full.test.targets["depth"][:, 0, 2:4, 2:4].mean(dim=(1, 2))
    assert torch.allclose(depth[:, 0, 1, 1], block, atol=1e-5)
    lengths = normal.norm(dim=1)[:, 1:]
    assert torch.allclose(lengths, torch.ones(()), atol=1e-5)
    square = build_dataset("nyuv2", {"root": nyuv2_root, "resize": 8, "limit": 1})
    assert square.input_shape == (3, 8, 8)


def test_cityscapes_tasks(tmp_path: Path) -> None:
    root = write_npy_layout(tmp_path, "cityscapes", {"train": 4, "val": 2})
    bundle = build_dataset("cityscapes", {"root": str(root), "resize": [8, 12], "val_fraction": 0.25})
    _check_contract(bundle)
    assert [(t.name, t.kind, t.num_outputs) for t in bundle.tasks] == [
        ("segmentation", "dense_classification", 7),
        ("depth", "dense_regression", 1),
    ]
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (3, 1, 2)


def test_a_test_folder_makes_val_the_validation_split(tmp_path: Path) -> None:
    root = write_npy_layout(tmp_path, "cityscapes", {"train": 3, "val": 2, "test": 1})
    bundle = build_dataset("cityscapes", {"root": root})
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (3, 2, 1)
    with pytest.raises(MtnasError, match="val_fraction applies only to a train \\+ val layout"):
        build_dataset("cityscapes", {"root": root, "val_fraction": 0.2})


def _corrupt(root: Path, rel: str, array: np.ndarray | bytes | None) -> Path:
    path = root / rel
    if array is None:
        path.unlink()
    elif isinstance(array, bytes):
        path.write_bytes(array)
    else:
        np.save(path, array)
    return path


@pytest.mark.parametrize(
    ("rel", "array", "expected"),
    [
        ("train/label/3.npy", None, "missing file .*label/3.npy"),
        ("train/image/2.npy", np.zeros((H, W), np.float32), "image/2.npy.*expected a float array of shape H x W x 3"),
        ("train/image/2.npy", np.zeros((H, W, 3), np.int64), "image/2.npy.*got int64"),
        ("val/depth/1.npy", np.ones((H, W + 1, 1), np.float32), "depth/1.npy.*H x W = 16 x 24, got float32 of shape"),
        ("val/normal/0.npy", np.ones((H, W, 2), np.float32), "normal/0.npy.*H x W x 3"),
        ("val/label/1.npy", np.full((H, W), 13.0, np.float32), "label/1.npy.*class indices 0..12 or -1"),
        ("val/label/1.npy", np.full((H, W), 0.5, np.float32), "label/1.npy.*class indices"),
        ("val/depth/0.npy", np.full((H, W, 1), np.nan, np.float32), "depth/0.npy.*NaN"),
        ("val/depth/0.npy", b"not an array", "depth/0.npy.*not a readable .npy array"),
        ("val/image/x.npy", np.zeros((H, W, 3), np.float32), "image/x.npy.*expected files named <N>.npy"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, rel: str, array: np.ndarray | bytes | None, expected: str) -> None:
    root = write_npy_layout(tmp_path, "nyuv2", {"train": 4, "val": 2})
    _corrupt(root, rel, array)
    with pytest.raises(MtnasError, match=expected) as err:
        build_dataset("nyuv2", {"root": root})
    assert "'nyuv2'" in str(err.value)


def test_missing_root_and_folders_are_data_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="root '.*nowhere' is not a folder; set dataset.args.root"):
        build_dataset("nyuv2", {"root": tmp_path / "nowhere"})
    root = write_npy_layout(tmp_path / "partial", "nyuv2", {"train": 2, "val": 1})
    for folder in (root / "val" / "normal").iterdir():
        folder.unlink()
    (root / "val" / "normal").rmdir()
    with pytest.raises(DataNotFoundError, match="missing folder '.*val/normal'"):
        build_dataset("nyuv2", {"root": root})
    with pytest.raises(MtnasError, match="needs argument\\(s\\) root"):
        build_dataset("cityscapes", {})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"resize": [8]}, "resize must be an int or \\[height, width\\]"),
        ({"resize": [8, 0]}, "resize\\[1\\] must be >= 1"),
        ({"limit": 0}, "limit must be >= 1"),
        ({"val_fraction": 1.0}, "val_fraction must be between 0 and 1"),
    ],
)
def test_bad_options(nyuv2_root: Path, args: dict, expected: str) -> None:
    with pytest.raises(MtnasError, match=expected):
        build_dataset("nyuv2", {"root": nyuv2_root, **args})


def test_a_hundred_samples_load(tmp_path: Path) -> None:
    root = write_npy_layout(tmp_path, "nyuv2", {"train": 100, "val": 20})
    bundle = build_dataset("nyuv2", {"root": root})
    assert len(bundle.train) + len(bundle.val) == 100


# -- CelebA ------------------------------------------------------------------------------------

CELEBA_SPLITS = [0, 0, 1, 0, 2, 0, 1, 2]  # partition of the 8 images: 4 train, 2 val, 2 test


def write_celeba(root: Path, n: int = 8, hw: tuple[int, int] = (12, 10)) -> Path:
    """8 JPEGs of 12 x 10, each a flat grey of 20 * (k + 1); attribute j of image k is 1 iff (j + k) % 3 == 0."""
    import matplotlib.image

    (root / "img_align_celeba").mkdir(parents=True)
    rows = []
    for k in range(n):
        name = f"{k + 1:06d}.jpg"
        matplotlib.image.imsave(root / "img_align_celeba" / name, np.full((*hw, 3), 20 * (k + 1), np.uint8))
        rows.append(name + " " + " ".join("1" if (j + k) % 3 == 0 else "-1" for j in range(40)))
    (root / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(rows) + "\n")
    partition = [f"{k + 1:06d}.jpg {s}" for k, s in enumerate(CELEBA_SPLITS[:n])]
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_celeba(tmp_path_factory.mktemp("celeba"))


def _grey_index(inputs: torch.Tensor) -> list[int]:
    return [round(float(x.mean()) * 255 / 20) - 1 for x in inputs]


def test_celeba_follows_the_partition(celeba_root: Path) -> None:
    bundle = build_dataset("celeba", {"root": str(celeba_root)})
    _check_contract(bundle)
    assert [t.name for t in bundle.tasks] == list(CELEBA_ATTRIBUTES)
    assert {(t.kind, t.num_outputs) for t in bundle.tasks} == {("classification", 2)}
    assert bundle.input_shape == (3, 12, 10)
    assert _grey_index(bundle.train.inputs) == [0, 1, 3, 5]
    assert _grey_index(bundle.val.inputs) == [2, 6]
    assert _grey_index(bundle.test.inputs) == [4, 7]
    for j, name in enumerate(CELEBA_ATTRIBUTES):
        assert bundle.train.targets[name].tolist() == [int((j + k) % 3 == 0) for k in (0, 1, 3, 5)]


def test_celeba_attributes_size_and_limit(celeba_root: Path) -> None:
    bundle = build_dataset("celeba", {"root": celeba_root, "attributes": ["Smiling", "Male"], "size": 4, "limit": 3})
    assert [t.name for t in bundle.tasks] == ["Smiling", "Male"]
    assert bundle.input_shape == (3, 4, 4)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (3, 2, 2)
    smiling = CELEBA_ATTRIBUTES.index("Smiling")
    assert bundle.train.targets["Smiling"].tolist() == [int((smiling + k) % 3 == 0) for k in (0, 1, 3)]
    assert _grey_index(bundle.train.inputs) == [0, 1, 3]  # a flat image stays flat when resized
    assert build_dataset("celeba", {"root": celeba_root, "size": [6, 5], "limit": 1}).input_shape == (3, 6, 5)


def test_unknown_attribute_suggests_the_closest(celeba_root: Path) -> None:
    with pytest.raises(MtnasError, match="unknown attribute 'Smilling' \\(did you mean 'Smiling'\\?\\); valid: 5_o"):
        build_dataset("celeba", {"root": celeba_root, "attributes": ["Smilling"]})


def _edit(path: Path, line: int, text: str | None) -> None:
    lines = path.read_text().splitlines()
    if text is None:
        del lines[line]
    else:
        lines[line] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda r: _edit(r / "list_attr_celeba.txt", 0, "9"),
            "list_attr_celeba.txt': line 1 says 9 images, the file lists 8",
        ),
        (
            lambda r: _edit(r / "list_attr_celeba.txt", 1, "Smiling Male"),
            "list_attr_celeba.txt' line 2: expected the 40",
        ),
        (
            lambda r: _edit(r / "list_attr_celeba.txt", 4, "000003.jpg" + " 1" * 39),
            "line 5: expected a file name and 40 values, got 39",
        ),
        (lambda r: _edit(r / "list_attr_celeba.txt", 3, "000002.jpg" + " 2" * 40), "line 4: expected values 1 or -1"),
        (
            lambda r: _edit(r / "list_eval_partition.txt", 1, "000002.jpg 3"),
            "list_eval_partition.txt' line 2: expected 'file 0|1|2'",
        ),
        (
            lambda r: _edit(r / "list_eval_partition.txt", 1, None),
            "list_eval_partition.txt' has no split for '000002.jpg'",
        ),
        (lambda r: (r / "img_align_celeba" / "000004.jpg").unlink(), "missing image '.*000004.jpg'"),
        (
            lambda r: (r / "img_align_celeba" / "000004.jpg").write_bytes(b"no jpeg"),
            "000004.jpg' is not a readable image",
        ),
        (lambda r: (r / "list_eval_partition.txt").unlink(), "missing file '.*list_eval_partition.txt'"),
    ],
)
def test_bad_celeba_files_are_named(tmp_path: Path, edit, expected: str) -> None:
    root = write_celeba(tmp_path)
    edit(root)
    with pytest.raises(MtnasError, match=expected):
        build_dataset("celeba", {"root": root})


def test_celeba_images_of_other_sizes_need_size(tmp_path: Path) -> None:
    import matplotlib.image

    root = write_celeba(tmp_path)
    matplotlib.image.imsave(root / "img_align_celeba" / "000002.jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(MtnasError, match="000002.jpg' is 8 x 8, the first image 10 x 12; give size"):
        build_dataset("celeba", {"root": root})
    assert build_dataset("celeba", {"root": root, "size": 8}).input_shape == (3, 8, 8)


def test_missing_celeba_folder_is_data_not_found(tmp_path: Path) -> None:
    (tmp_path / "list_attr_celeba.txt").write_text("0\n")
    with pytest.raises(DataNotFoundError, match="missing folder '.*img_align_celeba'"):
        build_dataset("celeba", {"root": tmp_path})


# -- the built-in spaces, pointed at the fakes --------------------------------------------------


@pytest.mark.parametrize("name", ["nyuv2", "cityscapes", "celeba"])
def test_builtin_space_resolves_runs_and_evaluates_on_the_fake(name: str, tmp_path: Path) -> None:
    data = yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text())
    root = write_celeba(tmp_path) if name == "celeba" else write_npy_layout(tmp_path, name, {"train": 4, "val": 2})
    data["dataset"]["args"].update(root=str(root), **({"size": 8} if name == "celeba" else {"resize": [8, 12]}))
    space, bundle = load_resolved(space_from_dict(data, name))
    assert space.is_resolved and space.input_shape == bundle.input_shape
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {})
    model = BranchedNet.from_space(tree, space)
    out = model(bundle.train.inputs)
    for task in space.tasks:
        loss = get_loss(task.loss, task.kind)(out[task.name], bundle.train.targets[task.name])
        assert torch.isfinite(loss), task.name  # ignored labels (-100) are skipped by cross_entropy
    metrics = evaluate(model, bundle.test, space)
    assert set(metrics) == set(space.task_names)
    assert all(np.isfinite(v) for task in metrics.values() for v in task.values())
