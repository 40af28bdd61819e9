"""Units of trained evidence are trainings: one key per training whatever space asks for it,
quantities read off a trained network added to the stored unit, weights kept by the store, and a
study that trains each unit once (issue 31, item 5)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import mtnas.train._baselines as baselines_module
import mtnas.train._evidence as evidence_module
from mtnas.model import BranchedNet
from mtnas.search import gradient_agreement
from mtnas.study import run_search
from mtnas.train import Evidence, LocalStore, Unit, proxy_space
from mtnas.tree import BranchingTree
from tests.conftest import write_tiny_space
from tests.test_trained_search import _small


def test_a_unit_has_one_key_under_a_space_and_under_its_proxy_space() -> None:
    space, bundle = _small(epochs=6)
    space = replace(space, search=replace(space.search, proxy_epochs=2))
    proxy = proxy_space(space)
    assert proxy.training.epochs == 2 != space.training.epochs
    unit = Unit(BranchingTree.all_shared(space.task_names, space.num_layers), space.proxy_epochs, seed=0)
    assert Evidence(space, bundle).key(unit) == Evidence(proxy, bundle).key(unit)
    assert Evidence(space, bundle).key(unit) != Evidence(space, bundle).key(replace(unit, epochs=6))
    # what shapes a training still names the unit: another learning rate is another training
    faster = replace(space, training=replace(space.training, lr=space.training.lr * 2))
    assert Evidence(faster, bundle).key(unit) != Evidence(space, bundle).key(unit)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int, int]]:
    """Every tree trained through the evidence or by ``compute_baselines`` itself: (tree key,
    epochs of its schedule, epochs trained, seed)."""
    trained: list[tuple[str, int, int, int]] = []
    real_trees, real_tree = evidence_module.train_trees, baselines_module.train_tree

    def trees(space, bundle, trees, *, seed, stop=None, **kwargs):
        epochs = space.training.epochs
        trained.extend((t.key, epochs, min(stop or epochs, epochs), seed) for t in trees)
        return real_trees(space, bundle, trees, seed=seed, stop=stop, **kwargs)

    def tree(tree, space, bundle, *, seed, **kwargs):
        trained.append((tree.key, space.training.epochs, space.training.epochs, seed))
        return real_tree(tree, space, bundle, seed=seed, **kwargs)

    monkeypatch.setattr(evidence_module, "train_trees", trees)
    monkeypatch.setattr(baselines_module, "train_tree", tree)
    return trained


def test_a_study_on_a_space_whose_proxy_budget_is_not_its_training_budget_trains_each_unit_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 31: a search keyed its units by the space (``training.epochs`` 2), each trial by the
    proxy space (1): every trial retrained what the search had trained; and the all-shared tree was
    trained three times (the search's probed unit, the all-shared trial, the baselines)."""
    path = write_tiny_space(tmp_path / "tiny.yaml", epochs=2)
    data = yaml.safe_load(path.read_text())
    data["search"].update({"proxy_epochs": 1})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    trained = _counting(monkeypatch)
    run, study = run_search(str(path), name="r", trials=4, seed=3, runs_dir=tmp_path, progress=False)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 4
    again = {unit: n for unit, n in Counter(trained).items() if n > 1}
    assert not again, f"trained more than once: {again}"
    tasks = data["tasks"]
    names = [t if isinstance(t, str) else t["name"] for t in tasks]
    shared = BranchingTree.all_shared(tuple(names), 4).key
    assert [u for u in trained if u[0] == shared and u[1:] == (1, 1, 3)] == [(shared, 1, 1, 3)]  # once per study
    searched = [t for t in study.trials if not t.user_attrs.get("fixed_tree")]
    assert searched and all(t.user_attrs["tree_key"] in {u[0] for u in trained} for t in searched)


def _tensor_bytes(obj: object, seen: set[int] | None = None) -> int:
    """The bytes of every tensor reachable from ``obj`` through attributes, mappings, sequences
    and dataclass fields."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(k, seen) + _tensor_bytes(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(_tensor_bytes(v, seen) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(_tensor_bytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and type(obj).__module__.startswith(("mtnas", "tests")):
        return sum(_tensor_bytes(v, seen) for v in vars(obj).values())
    return 0


def test_evidence_keeps_no_weights_in_memory_and_reads_them_back_from_the_store(tmp_path: Path) -> None:
    space, bundle = _small()
    t, n = space.task_names, space.num_layers
    evidence = Evidence(space, bundle, store=LocalStore(tmp_path))
    held = _tensor_bytes(evidence)  # the dataset's tensors
    trees = [BranchingTree.all_shared(t, n)] + [BranchingTree.from_split_points(t, n, {layer: (t[:k], t[k:])})
                                                for layer in (1, 2, 3) for k in (2, 3, 4)]
    units = [Unit(tree, 1, seed=0) for tree in trees]
    evidence.obtain(units)
    assert evidence.trained == len(units) and _tensor_bytes(evidence) == held
    state = evidence.weights(units[4])
    BranchedNet.from_space(trees[4], space).load_state_dict(state)  # strict: that unit's network
    assert _tensor_bytes(evidence) == held and evidence.trained == len(units)  # read from the store, not trained


def test_a_quantity_read_off_a_trained_unit_is_added_to_its_stored_evidence_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space, bundle = _small()
    tree = BranchingTree.all_shared(space.task_names, space.num_layers)
    unit = Unit(tree, 1, seed=0)
    first = Evidence(space, bundle, store=LocalStore(tmp_path))
    first.obtain([unit])  # trained without the agreement: nobody asked for it
    trained = _counting(monkeypatch)
    second = Evidence(space, bundle, store=LocalStore(tmp_path))
    agreement = second.extra(unit, "agreement", gradient_agreement, shape=(6, 6))
    assert trained == [] and second.trained == 0  # computed from the stored weights: nothing trained again
    net = BranchedNet.from_space(tree, space)
    net.load_state_dict(first.weights(unit))
    assert np.array_equal(agreement, gradient_agreement(net, bundle.train, space))

    def never(*args: object) -> np.ndarray:
        raise AssertionError("computed again")

    third = Evidence(space, bundle, store=LocalStore(tmp_path))
    assert np.array_equal(third.extra(unit, "agreement", never, shape=(6, 6)), agreement)  # read from the store
    with pytest.warns(match="not used"):  # a stored value of another shape is not believed: computed again
        assert Evidence(space, bundle, store=LocalStore(tmp_path)).extra(
            unit, "agreement", lambda *a: np.zeros((2, 2)), shape=(2, 2)).shape == (2, 2)
    assert trained == []
