"""Trainings that stop and resume exactly (issue 31, item 2: rising fidelity, survivors continued):
a training to s1 resumed to s2 is the training to s2, alone or stacked and either way round; a
unit's checkpoint is kept in the store bound to the unit; ``Evidence.obtain`` resumes a chain
from its latest stored stop; the ledger counts each chain once at its largest stop."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import mtnas.train._batched as batched_module
from mtnas.core import DamagedEntryWarning, MtnasError
from mtnas.model import BranchedNet
from mtnas.train import Checkpoint, Evidence, LocalStore, TreeStack, Unit, subset_space, train_model, train_trees
from mtnas.tree import BranchingTree
from tests.test_evidence_claims import _study
from tests.test_trained_search import _small

CPU = torch.device("cpu")


def _net(tree: BranchingTree, space) -> BranchedNet:
    torch.manual_seed(0)
    return BranchedNet.from_space(tree, space)


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], **tol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), **tol), k


def _close_metrics(a: dict, b: dict, tol: float = 2e-3) -> None:
    assert a.keys() == b.keys()
    for task in a:
        for metric, value in a[task].items():
            assert b[task][metric] == pytest.approx(value, rel=tol, abs=tol), (task, metric)


# -- 1. one training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("balancing", ["equal", "uncertainty", "dwa", "pcgrad"])
def test_a_training_resumed_rung_by_rung_is_the_training_straight(balancing: str) -> None:
    space, bundle = _small(epochs=4)
    space = replace(space, training=replace(space.training, balancing=balancing))
    t = space.task_names
    tree = BranchingTree.from_split_points(t, 4, {2: (t[:3], t[3:])})
    straight_net = _net(tree, space)
    straight = train_model(straight_net, space, bundle, device=CPU, seed=0)
    checkpoint, net = None, None
    for stop in (1, 2, 4):  # three rungs of one 4-epoch schedule, each a fresh model resumed
        net = _net(tree, space)
        rung = train_model(net, space, bundle, device=CPU, seed=0, stop=stop, resume=checkpoint, checkpoint=True)
        checkpoint = rung.checkpoint
        assert checkpoint.epoch == stop and rung.epochs == stop and checkpoint.finished == (stop == 4)
    assert rung.val == straight.val and rung.test == straight.test and rung.history == straight.history
    _same_weights(net.state_dict(), straight_net.state_dict(), rtol=0, atol=1e-6)
    assert rung.seconds >= checkpoint.seconds > 0  # the rungs' seconds add up


def test_a_checkpoint_that_does_not_fit_the_training_is_one_line() -> None:
    space, bundle = _small(epochs=3)
    t = space.task_names
    tree = BranchingTree.from_split_points(t, 4, {2: (t[:3], t[3:])})
    first = train_model(_net(tree, space), space, bundle, device=CPU, seed=0, stop=1, checkpoint=True).checkpoint
    cases = {
        "of 3 epochs, this one of 5": dict(model=_net(tree, space), epochs=5),
        "weights do not fit the model": dict(model=_net(BranchingTree.all_shared(t, 4), space)),
    }
    for says, given in cases.items():
        with pytest.raises(MtnasError, match=says) as caught:
            train_model(given["model"], space, bundle, device=CPU, seed=0, epochs=given.get("epochs"), resume=first)
        assert "\n" not in str(caught.value)
    later = train_model(_net(tree, space), space, bundle, device=CPU, seed=0, stop=2, checkpoint=True).checkpoint
    with pytest.raises(MtnasError, match="past this training's stop at 1"):
        train_model(_net(tree, space), space, bundle, device=CPU, seed=0, stop=1, resume=later)


# -- 2. stacked trees --------------------------------------------------------------------------------


def _stackable():
    """Four trees of one wiring (split at layer 1 into two groups) over the kinds space."""
    space, bundle = _small("digit_grating_kinds", epochs=3)
    t = space.task_names
    trees = [BranchingTree.from_split_points(t, 4, {1: (g, tuple(x for x in t if x not in g))})
             for g in itertools.combinations(t, 3)][:4]
    return space, bundle, trees


def _counting_models(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kind of model of every training ``train_trees`` runs: a stack or one tree."""
    seen: list[str] = []
    real = batched_module.train_model

    def counted(model, *args, **kwargs):
        seen.append("stack" if isinstance(model, TreeStack) else "alone")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(batched_module, "train_model", counted)
    return seen


@pytest.mark.parametrize("balancing", ["equal", "uncertainty"])
def test_a_member_checkpoint_resumes_alone_or_stacked_as_its_tree_trained_alone_straight(
        balancing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    space, bundle, trees = _stackable()
    space = replace(space, training=replace(space.training, balancing=balancing))
    models = _counting_models(monkeypatch)
    alone = [train_trees(space, bundle, [tree], device=CPU, seed=2, checkpoints=True)[0] for tree in trees]
    alone_first = [train_trees(space, bundle, [tree], device=CPU, seed=2, stop=1, checkpoints=True)[0][1]
                   for tree in trees]
    assert models == ["alone"] * 8
    stacked_first = train_trees(space, bundle, trees, device=CPU, seed=2, stop=1, checkpoints=True)
    assert models[8:] == ["stack"]
    for (_, member), own, tree in zip(stacked_first, alone_first, trees):  # a member's slice is the lone tree's state
        assert member.optimizer.keys() == own.optimizer.keys() and member.balancer.keys() == own.balancer.keys()
        for name, state in own.optimizer.items():
            assert torch.equal(member.optimizer[name]["step"], state["step"])
            assert torch.allclose(member.optimizer[name]["exp_avg"], state["exp_avg"], rtol=1e-3, atol=1e-5), name
        assert torch.equal(member.generator, own.generator) and torch.equal(member.torch_rng, own.torch_rng)
        BranchedNet.from_space(tree, subset_space(space, tree.tasks) if tree.tasks != space.task_names else space
                               ).load_state_dict(member.weights)  # strict: the tree's own names

    # stacked -> alone: each member's checkpoint resumed on its own
    resumed_alone = [train_trees(space, bundle, [tree], device=CPU, seed=2, resume=[c], checkpoints=True)[0]
                     for tree, (_, c) in zip(trees, stacked_first)]
    # alone -> stacked: the four lone checkpoints resumed as one stack
    del models[:]
    resumed_stacked = train_trees(space, bundle, trees, device=CPU, seed=2, resume=alone_first, checkpoints=True)
    assert models == ["stack"]
    for way in (resumed_alone, resumed_stacked):
        for (straight, end), (result, checkpoint) in zip(alone, way):
            _close_metrics(straight.val, result.val)
            _close_metrics(straight.test, result.test)
            _same_weights(end.weights, checkpoint.weights, rtol=1e-3, atol=5e-4)
            assert checkpoint.finished and len(checkpoint.history) == 3
    # stacked -> stacked: exactly the stack trained straight
    straight_stack = train_trees(space, bundle, trees, device=CPU, seed=2)
    again = train_trees(space, bundle, trees, device=CPU, seed=2, resume=[c for _, c in stacked_first])
    for (a, wa), (b, wb) in zip(straight_stack, again):
        assert a.val == b.val
        _same_weights(wa, wb, rtol=0, atol=1e-6)


def test_checkpoints_of_another_seed_do_not_stack_and_are_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    space, bundle, trees = _stackable()
    firsts = [c for _, c in train_trees(space, bundle, trees, device=CPU, seed=2, stop=1, checkpoints=True)]
    other_seed = train_trees(space, bundle, trees[:1], device=CPU, seed=5, stop=1, checkpoints=True)[0][1]
    stack = TreeStack([batched_module._net(space, tree, 2) for tree in trees],
                      [[f"{t}@{j}" for t in tree.tasks] for j, tree in enumerate(trees)])
    with pytest.raises(ValueError, match="other batch orders"):
        stack.stack_checkpoints([other_seed, *firsts[1:]])
    models = _counting_models(monkeypatch)
    # one of another seed cannot resume a training of seed 2 (another batch order): refused, in one line
    with pytest.raises(MtnasError, match="cannot resume"):
        train_trees(space, bundle, trees, device=CPU, seed=2, stop=2, resume=[other_seed, *firsts[1:]])
    assert models == ["alone"]  # not stacked: each alone, the first refused


# -- 3. the store ------------------------------------------------------------------------------------


def _checkpoint(stop: int = 1) -> tuple[BranchingTree, Checkpoint]:
    space, bundle = _small(epochs=3)
    t = space.task_names
    tree = BranchingTree.from_split_points(t, 4, {2: (t[:3], t[3:])})
    return tree, train_trees(space, bundle, [tree], device=CPU, seed=0, stop=stop, checkpoints=True)[0][1]


def _equal(a: Checkpoint, b: Checkpoint) -> None:
    assert (a.epochs, a.epoch, a.seconds, a.history) == (b.epochs, b.epoch, b.seconds, b.history)
    assert [dict(g, betas=list(g["betas"])) for g in a.groups] == [dict(g, betas=list(g["betas"])) for g in b.groups]
    assert a.schedule == b.schedule
    _same_weights(a.weights, b.weights, rtol=0, atol=0)
    assert a.optimizer.keys() == b.optimizer.keys()
    for name in a.optimizer:
        assert a.optimizer[name].keys() == b.optimizer[name].keys()
        assert all(torch.equal(v, b.optimizer[name][k]) for k, v in a.optimizer[name].items())
    assert torch.equal(a.generator, b.generator) and torch.equal(a.torch_rng, b.torch_rng)


@pytest.mark.parametrize("kind", ["local", "study"])
def test_a_checkpoint_round_trips_through_the_store_bound_to_its_unit(tmp_path: Path, kind: str) -> None:
    tree, checkpoint = _checkpoint()
    a, b = "a" * 64, "b" * 64
    store = LocalStore(tmp_path) if kind == "local" else _study(tmp_path)
    assert store.get_checkpoint(a, tree.key) is None  # nothing kept yet
    store.put_checkpoint(a, tree.key, checkpoint)
    _equal(store.get_checkpoint(a, tree.key), checkpoint)
    _equal(store.get_checkpoint(a, tree.key), checkpoint)  # read twice: nothing consumed
    _same_weights(store.get_weights(a, tree.key), checkpoint.weights, rtol=0, atol=0)

    # another unit's state put in its place: refused, in one line naming it
    store.put_checkpoint(b, tree.key, replace(checkpoint, seconds=1.0))
    if kind == "local":
        store._path(a, ".state.safetensors").write_bytes(store._path(b, ".state.safetensors").read_bytes())
        where = str(store._path(a, ".state.safetensors"))
    else:
        attrs = store._storage.get_study_system_attrs(store._study_id)
        store._storage.set_study_system_attr(store._study_id, f"state:{a}", attrs[f"state:{b}"])
        where = f"study 's:evidence': resume state of unit {a[:12]}"
    with pytest.warns(DamagedEntryWarning) as record:
        assert store.get_checkpoint(a, tree.key) is None
    (line,) = [str(w.message) for w in record]
    assert line.startswith(where) and "belongs to another" in line and line.endswith("not resumed from")

    # a damaged one: refused, in one line
    store.put_checkpoint(a, tree.key, checkpoint)
    if kind == "local":
        path = store._path(a, ".state.safetensors")
        data = bytearray(path.read_bytes())
        data[-5] ^= 0xFF  # one byte of the tensors
        path.write_bytes(bytes(data))
    else:
        artifact = store._storage.get_study_system_attrs(store._study_id)[f"state:{a}"]
        (path,) = (tmp_path / "artifacts").rglob(f"*{artifact}*")
        path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.warns(DamagedEntryWarning) as record:
        assert store.get_checkpoint(a, tree.key) is None
    (line,) = [str(w.message) for w in record]
    assert ("checksum" in line or "damaged" in line) and "\n" not in line and line.endswith("not resumed from")


# -- 4. units that resume, and the ledger ------------------------------------------------------------


def _epochs_trained(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(tree key, epochs trained) of every tree the evidence trains, from the trainings themselves:
    each training's epochs past the checkpoint it resumed from."""
    trained: list[tuple[str, int]] = []
    real = batched_module.train_model

    def counted(model, *args, resume=None, **kwargs):
        result = real(model, *args, resume=resume, **kwargs)
        epochs = result.epochs - (resume.epoch if resume is not None else 0)
        trained.extend((tree.key, epochs) for tree in (model.trees if isinstance(model, TreeStack) else [model.tree]))
        return result

    monkeypatch.setattr(batched_module, "train_model", counted)
    return trained


def test_obtain_resumes_a_chain_from_its_latest_stored_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space, bundle = _small()
    t, n = space.task_names, space.num_layers
    trees = [BranchingTree.from_split_points(t, n, {1: (t[:k], t[k:])}) for k in (1, 2, 3, 4)]  # one wiring: stacked
    evidence = Evidence(space, bundle, store=LocalStore(tmp_path / "evidence"))
    trained = _epochs_trained(monkeypatch)
    rung1 = evidence.obtain([Unit(tree, 4, seed=0, stop=1) for tree in trees])
    rung2 = evidence.obtain([Unit(tree, 4, seed=0, stop=2) for tree in trees[:2]])  # the survivors go on
    (last,) = evidence.obtain([Unit(trees[0], 4, seed=0)])  # the winner, to the end of its schedule
    assert sorted(trained) == sorted([(tr.key, 1) for tr in trees] + [(tr.key, 1) for tr in trees[:2]]
                                     + [(trees[0].key, 2)])
    assert evidence.trained == 7 and evidence.resumed == 3
    assert [r.unit.trained_epochs for r in rung1 + rung2] == [1, 1, 1, 1, 2, 2]

    # the same as training it straight (another store: nothing to resume)
    del trained[:]
    fresh = Evidence(space, bundle, store=LocalStore(tmp_path / "other"))
    (straight,) = fresh.obtain([Unit(trees[0], 4, seed=0)])
    assert trained == [(trees[0].key, 4)] and fresh.resumed == 0
    _close_metrics(straight.result.val, last.result.val, tol=1e-6)
    _same_weights(fresh.weights(Unit(trees[0], 4, seed=0)), evidence.weights(Unit(trees[0], 4, seed=0)),
                  rtol=1e-4, atol=1e-5)
    # a unit trained to the end of its schedule keeps its weights, and no state to resume from
    store = evidence.store
    key = evidence.key(Unit(trees[0], 4, seed=0))
    assert store._path(key, ".safetensors").exists() and not store._path(key, ".state.safetensors").exists()
    assert store._path(evidence.key(Unit(trees[0], 4, seed=0, stop=2)), ".state.safetensors").exists()


def test_a_damaged_checkpoint_is_named_and_the_unit_trained_from_scratch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space, bundle = _small()
    tree = BranchingTree.from_split_points(space.task_names, 4, {2: (space.task_names[:3], space.task_names[3:])})
    store = LocalStore(tmp_path)
    evidence = Evidence(space, bundle, store=store)
    evidence.obtain([Unit(tree, 3, seed=0, stop=1)])
    path = store._path(evidence.key(Unit(tree, 3, seed=0, stop=1)), ".state.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    trained = _epochs_trained(monkeypatch)
    again = Evidence(space, bundle, store=LocalStore(tmp_path))
    with pytest.warns(DamagedEntryWarning, match="checksum.*not resumed from"):
        (result,) = again.obtain([Unit(tree, 3, seed=0, stop=2)])
    assert trained == [(tree.key, 2)] and again.resumed == 0 and result.unit.trained_epochs == 2  # from scratch

    # sound and bound to the unit, but of another training (a 5-epoch schedule): named, not resumed
    # from, and neither is the damaged one before it
    ((_, other),) = train_trees(replace(space, training=replace(space.training, epochs=5)), bundle, [tree], device=CPU,
                                seed=0, stop=2, checkpoints=True)
    store.put_checkpoint(evidence.key(Unit(tree, 3, seed=0, stop=2)), tree.key, other)
    del trained[:]
    with pytest.warns(DamagedEntryWarning) as record:
        Evidence(space, bundle, store=LocalStore(tmp_path)).obtain([Unit(tree, 3, seed=0)])
    lines = [str(w.message) for w in record]
    assert len(lines) == 2 and "(it is a training of 5 epochs, this one of 3); not resumed from" in lines[0]
    assert "checksum" in lines[1] and trained == [(tree.key, 3)]


def test_the_ledger_counts_each_chain_once_at_its_largest_stop(tmp_path: Path) -> None:
    space, bundle = _small()
    t, n = space.task_names, space.num_layers
    a = BranchingTree.from_split_points(t, n, {1: (t[:3], t[3:])})
    b = BranchingTree.all_shared(t, n)
    evidence = Evidence(space, bundle, store=LocalStore(tmp_path))
    evidence.obtain([Unit(a, 4, 0, stop=1), Unit(b, 4, 0, stop=1)])
    assert evidence.spent == pytest.approx(evidence.cost(a) + evidence.cost(b))
    evidence.obtain([Unit(a, 4, 0, stop=2)])
    evidence.obtain([Unit(a, 4, 0)])
    survivor = 4 * evidence.cost(a)  # its last stop, not 1 + 2 + 4
    assert evidence.spent == pytest.approx(survivor + evidence.cost(b))
    evidence.obtain([Unit(a, 4, 0, stop=2)])  # an earlier rung asked for again costs nothing more
    evidence.obtain([Unit(a, 4, 1, stop=1), Unit(a, 2, 0, stop=1)])  # another seed, another schedule: chains
    assert evidence.spent == pytest.approx(survivor + evidence.cost(b) + 2 * evidence.cost(a))
    # read back from the store by another evidence (nothing trained), the ledger is the same
    reader = Evidence(space, bundle, store=LocalStore(tmp_path))
    reader.obtain([Unit(a, 4, 0, stop=s) for s in (1, 2, None)] + [Unit(b, 4, 0, stop=1)])
    assert reader.trained == 0 and reader.spent == pytest.approx(survivor + evidence.cost(b))


def test_a_study_store_resumes_a_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space, bundle = _small()
    tree = BranchingTree.from_split_points(space.task_names, 4, {2: (space.task_names[:3], space.task_names[3:])})
    store = _study(tmp_path)
    Evidence(space, bundle, store=store).obtain([Unit(tree, 3, seed=0, stop=1)])
    trained = _epochs_trained(monkeypatch)
    other = Evidence(space, bundle, store=_study(tmp_path))  # another worker of the study
    (result,) = other.obtain([Unit(tree, 3, seed=0, stop=2)])
    assert trained == [(tree.key, 1)] and other.resumed == 1
    assert store._storage.get_study_system_attrs(store._study_id).keys() >= {
        f"state:{other.key(Unit(tree, 3, seed=0, stop=1))}", f"state:{other.key(Unit(tree, 3, seed=0, stop=2))}"}
