"""The trained search: stacked and warm-started trees, units of evidence and their stores, the pair
model and the best partition, scores without baselines, TAG as published, and the search itself."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import optuna
import pytest
import torch

from mtnas.core import DamagedEntryWarning
from mtnas.model import BranchedNet, inherit_state, refines
from mtnas.search import (
    METHODS,
    Evidence,
    LocalStore,
    PairModel,
    Unit,
    gradient_agreement,
    references,
    relative_scores,
    search_tree,
    tag_total,
    train_with_affinity,
)
from mtnas.space import load_resolved, load_space
from mtnas.train import subset_space, train_model, train_tree, train_trees
from mtnas.tree import BranchingTree, InvalidTreeError

CPU = torch.device("cpu")


def _small(name: str = "digit_gratings", epochs: int = 1, n: int = 128):
    space = load_space(name)
    space = replace(space, dataset=replace(space.dataset, args={**space.dataset.args, "n_train": n, "n_val": 64,
                                                                "n_test": 64}),
                    training=replace(space.training, epochs=epochs), search=replace(space.search, proxy_epochs=None))
    return load_resolved(space)


def test_trees_of_one_wiring_train_stacked_as_each_would_alone() -> None:
    space, bundle = _small("digit_grating_kinds")
    t = space.task_names
    splits = [BranchingTree.from_split_points(t, 4, {1: (g, tuple(x for x in t if x not in g))})
              for g in itertools.combinations(t, 3)][:4]  # four trees of one wiring: split at 1, two groups
    pairs = [BranchingTree.all_shared(p, 4) for p in itertools.combinations(t, 2)][:4]  # all-shared over pairs
    trees = splits + pairs
    stacked = train_trees(space, bundle, trees, device=CPU, seed=2)
    for tree, (result, state) in zip(trees, stacked):
        own = space if tree.tasks == t else subset_space(space, tree.tasks)
        alone = train_tree(tree, own, bundle, device=CPU, seed=2)
        for task in tree.tasks:
            for metric, value in alone.val[task].items():
                assert result.val[task][metric] == pytest.approx(value, rel=2e-3, abs=2e-3), (tree.describe(), task)
        BranchedNet.from_space(tree, own).load_state_dict(state)  # strict: the stack's weights are the tree's


def test_a_finer_tree_inherits_every_node_from_the_node_it_splits_from() -> None:
    space, bundle = _small()
    t, n = space.task_names, space.num_layers
    shared = BranchingTree.all_shared(t, n)
    two = BranchingTree.from_split_points(t, n, {1: (t[:3], t[3:])})
    deeper = BranchingTree.from_split_points(t, n, {1: (t[:3], t[3:]), 3: (t[:1], t[1:3], t[3:])})
    ((_, state),) = train_trees(space, bundle, [shared], device=CPU, seed=0)
    fine = inherit_state(shared, state, two)
    net = BranchedNet.from_space(two, space)
    net.load_state_dict(fine)  # strict: every weight of the finer tree is there
    for name, value in fine.items():
        parts = name.split(".")
        source = f"layers.{parts[1]}.0.{'.'.join(parts[3:])}" if parts[0] == "layers" else name
        assert torch.equal(value, state[source]), name
    assert refines(deeper, two) and refines(two, shared) and not refines(shared, two)
    BranchedNet.from_space(deeper, space).load_state_dict(inherit_state(two, fine, deeper))
    with pytest.raises(InvalidTreeError, match="does not refine"):
        inherit_state(two, fine, BranchingTree.from_split_points(t, n, {1: ((t[0], t[4]), t[1:4] + t[5:])}))


def test_a_warm_start_begins_from_the_coarser_trees_weights() -> None:
    from mtnas.train._batched import _net  # the network train_trees trains

    space, bundle = _small()
    t, n = space.task_names, space.num_layers
    shared, two = BranchingTree.all_shared(t, n), BranchingTree.from_split_points(t, n, {2: (t[:3], t[3:])})
    ((_, state),) = train_trees(space, bundle, [shared], device=CPU, seed=0)
    warm, cold = _net(space, two, 0, (shared, state)).state_dict(), _net(space, two, 0).state_dict()
    inherited = inherit_state(shared, state, two)
    assert all(torch.equal(warm[k], inherited[k]) for k in warm)
    convs = [k for k in warm if k.startswith("layers.") and k.endswith(".0.weight")]
    assert convs and not any(torch.equal(warm[k], cold[k]) for k in convs)


def test_the_first_epochs_of_a_schedule_and_a_hook_before_every_step() -> None:
    space, bundle = _small(epochs=4)
    tree = BranchingTree.all_shared(space.task_names, space.num_layers)
    seen: list[tuple[int, float]] = []
    torch.manual_seed(0)
    net = BranchedNet.from_space(tree, space)
    result = train_model(net, space, bundle, device=CPU, seed=0, stop=1,
                         before_step=lambda step, lr, batch: seen.append((step, lr)))
    steps = -(-len(bundle.train) // space.training.batch_size)
    assert result.epochs == 1 and [s for s, _ in seen] == list(range(steps))
    # the learning rate follows the 4-epoch schedule: after one epoch of four it has not decayed much
    assert seen[0][1] == pytest.approx(space.training.lr) and seen[-1][1] > 0.8 * space.training.lr


def test_units_are_trained_once_and_read_back_by_any_evidence_of_the_same_content() -> None:
    space, bundle = _small()
    tree = BranchingTree.from_split_points(space.task_names, 4, {2: (space.task_names[:3], space.task_names[3:])})
    unit = Unit(tree, 2, seed=1)
    first = Evidence(space, bundle)
    (a,) = first.obtain([unit])
    assert first.trained == 1 and a.unit == unit
    again = Evidence(replace(space, search=replace(space.search, gain_per_cost=20.0)), bundle)  # another trial
    (b,) = again.obtain([unit])
    assert again.trained == 0 and b.result == a.result
    assert Evidence(space, bundle).key(unit) != Evidence(space, bundle).key(replace(unit, stop=1))
    assert Evidence(space, bundle).key(unit) != Evidence(space, bundle).key(replace(unit, seed=2))
    BranchedNet.from_space(tree, space).load_state_dict(first.weights(unit))


def test_a_unit_is_keyed_by_the_datas_content_and_mtnas_version(monkeypatch) -> None:
    space, bundle = _small()
    unit = Unit(BranchingTree.all_shared(space.task_names, 4), 1, seed=0)
    key = Evidence(space, bundle).key(unit)
    edited = replace(bundle, train=replace(bundle.train, inputs=bundle.train.inputs.clone()))
    edited.train.inputs[0, 0, 0, 0] += 1.0  # the same dataset name, one pixel changed
    assert Evidence(space, edited).key(unit) != key
    import mtnas.train._evidence as evidence_module

    monkeypatch.setattr(evidence_module, "__version__", "99.0")
    assert Evidence(space, bundle).key(unit) != key


def test_a_damaged_or_edited_unit_is_trained_again_with_a_warning_naming_the_file() -> None:
    space, bundle = _small()
    unit = Unit(BranchingTree.all_shared(space.task_names, 4), 1, seed=0)
    evidence = Evidence(space, bundle)
    evidence.obtain([unit])
    (path,) = evidence.store.root.rglob("*.json")
    stored = json.loads(path.read_text())
    stored["content"]["result"]["val"]["digit"]["accuracy"] = 1.0  # edited: the checksum no longer matches
    path.write_text(json.dumps(stored))
    again = Evidence(space, bundle)
    with pytest.warns(DamagedEntryWarning, match=str(path)):
        again.obtain([unit])
    assert again.trained == 1


def test_a_claim_of_a_live_process_is_respected_and_one_of_a_dead_process_taken_over(tmp_path) -> None:
    store = LocalStore(tmp_path)
    assert store.claim("k1") and not store.claim("k1")  # this process holds it already
    lock = store._path("k2", ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    import socket

    from mtnas.core import process_start

    parent = os.getppid()
    claim = {"host": socket.gethostname(), "pid": parent, "start": process_start(parent), "token": "t"}
    lock.write_text(json.dumps(claim))  # alive, and beating (just written)
    assert not store.claim("k2")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({**claim, "pid": dead.pid}))
    assert store.claim("k2")  # its process is gone: taken over
    store.put("k2", {"x": 1})
    assert store.get("k2") == {"x": 1, "key": "k2"} and not store.claim("k2")


def _claim_all(url: str, who: str, queue) -> None:
    import time

    from mtnas.study._storage import open_storage
    from mtnas.study._study_store import StudyStore

    store = StudyStore(open_storage(url), "s", "unused")
    pending, mine = [f"k{i}" for i in range(8)], []
    while pending:
        for key in list(pending):
            if store.get(key) is not None:
                pending.remove(key)
            elif store.claim(key):
                time.sleep(0.1)  # the training
                store.put(key, {"by": who})
                mine.append(key)
                pending.remove(key)
        time.sleep(0.02)
    queue.put((who, mine))


def test_workers_of_one_study_split_the_units_and_train_each_once(tmp_path) -> None:
    url = f"journal:///{tmp_path / 'journal.log'}"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_claim_all, args=(url, who, queue)) for who in "AB"]
    for w in workers:
        w.start()
    done = dict(queue.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    trained = done["A"] + done["B"]
    assert sorted(trained) == [f"k{i}" for i in range(8)]  # each unit once
    assert done["A"] and done["B"]  # and both took a share
    from mtnas.study._storage import open_storage
    from mtnas.study._study_store import StudyStore

    store = StudyStore(open_storage(url), "s", "unused")
    assert {store.get(f"k{i}")["by"] for i in range(8)} == {"A", "B"}


def test_a_dead_workers_claim_in_the_study_is_taken_over(tmp_path) -> None:
    from mtnas.study._storage import open_storage
    from mtnas.study._study_store import StudyStore

    url = f"journal:///{tmp_path / 'journal.log'}"
    code = ("from mtnas.study._study_store import StudyStore; from mtnas.study._storage import open_storage; "
            f"import os; s = StudyStore(open_storage({url!r}), 's', 'unused'); assert s.claim('k'); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True)
    store = StudyStore(open_storage(url), "s", "unused")
    assert store.claim("k")  # the claimant's process is gone: its trial failed, the unit taken over
    store.put("k", {"ok": True})
    assert store.get("k")["ok"] is True


def test_a_result_stored_after_its_claim_was_taken_over_is_kept(tmp_path) -> None:
    """An owner that looked dead to another process (its claim failed meanwhile) still keeps what it trained."""
    from mtnas.study._storage import open_storage
    from mtnas.study._study_store import StudyStore

    store = StudyStore(open_storage(f"journal:///{tmp_path / 'journal.log'}"), "s", "unused")
    assert store.claim("k")
    store._storage.set_trial_state_values(store._mine["k"], state=optuna.trial.TrialState.FAIL)  # taken over
    store.put("k", {"ok": True})
    assert store.get("k") == {"ok": True} and not store.claim("k")


def test_scores_need_no_baselines_and_no_loss_scale_enters() -> None:
    space, _ = _small("digit_grating_kinds")
    tasks = space.task_names
    good = {t: {m: 1.0 for m in space.task(t).metrics} for t in tasks}
    worse = {t: dict(v) for t, v in good.items()}
    for t in tasks:
        for m in space.task(t).metrics:
            from mtnas.nn import get_metric

            worse[t][m] = 0.9 if get_metric(m, space.task(t).kind).higher_is_better else 1.1
    assert relative_scores([good, worse], space) == pytest.approx([0.0, -10.0])
    # a task whose metric is 1,000 times larger weighs the same
    big = {t: {m: v * (1000 if t == "ink" else 1) for m, v in d.items()} for t, d in good.items()}
    big_worse = {t: {m: v * (1000 if t == "ink" else 1) for m, v in d.items()} for t, d in worse.items()}
    assert relative_scores([big, big_worse], space) == pytest.approx([0.0, -10.0])
    assert references([good, worse], space) == good


def _blocks(groups: list[list[int]], inside: float = -1.0, across: float = -10.0) -> np.ndarray:
    t = sum(len(g) for g in groups)
    label = {i: g for g, members in enumerate(groups) for i in members}
    return np.array([[0.0 if i == j else inside if label[i] == label[j] else across for j in range(t)] for i in range(t)])


def test_the_pair_model_fitted_to_trained_groupings_learns_what_partners_do() -> None:
    tasks = tuple(f"t{i}" for i in range(6))
    harm = _blocks([[0, 1, 2], [3, 4, 5]])
    truth = PairModel(tasks, harm)
    rng = np.random.default_rng(0)
    groupings = [(tasks,)] + [tuple(tuple(t for t, lab in zip(tasks, labels) if lab == g) for g in set(labels))
                              for labels in (rng.integers(0, 2, 6) for _ in range(10))]
    groupings = [tuple(g for g in grouping if g) for grouping in groupings]
    terms = []
    for grouping in groupings:
        labels = {t: i for i, g in enumerate(grouping) for t in g}
        terms.append([sum(harm[i, j] for j in range(6) if j != i and labels[tasks[j]] == labels[tasks[i]])
                      for i in range(6)])
    fitted = PairModel.fit(tasks, groupings, terms, prior=np.zeros((6, 6)), ridge=1e-3)
    assert fitted.best(2) == truth.best(2) == (("t0", "t1", "t2"), ("t3", "t4", "t5"))
    assert fitted.best(2, exclude={(("t0", "t1", "t2"), ("t3", "t4", "t5"))}) != fitted.best(2)


def test_one_pair_model_and_one_best_partition_exact_or_by_local_moves() -> None:
    from mtnas.search import EXHAUSTIVE, all_partitions, count_partitions
    from mtnas.space import trade_off_score

    tasks = tuple(f"t{i}" for i in range(6))
    harm = _blocks([[0, 1, 2], [3, 4, 5]])
    for mode in ("sum", "mean"):  # Standley et al.'s mean of pairs, or their sum: the same model's best
        model = PairModel(tasks, harm, mode=mode)
        exhaustive = max(all_partitions(tasks, 2), key=model.estimate)
        assert model.best(2) == exhaustive == (("t0", "t1", "t2"), ("t3", "t4", "t5"))
    many = tuple(f"t{i}" for i in range(12))
    planted = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    model = PairModel(many, _blocks(planted))
    assert count_partitions(12, 4) > EXHAUSTIVE  # climbed, not enumerated
    found = model.best(4)
    assert found == tuple(tuple(f"t{i}" for i in g) for g in planted)
    assert model.best(4, exclude={found}) is None  # every restart climbs back to it: nothing else to give
    assert model.best(13) is None
    assert trade_off_score(-2.0, 1.5, 4.0) == -4.0 and trade_off_score(3.0, 1.0, 9.0) == 3.0


def test_gradient_agreement_is_one_for_tasks_that_ask_the_same() -> None:
    space, bundle = _small()
    twin = replace(space, tasks=space.tasks + (replace(space.task("digit"), name="digit2"),))
    train = replace(bundle.train, targets={**bundle.train.targets, "digit2": bundle.train.targets["digit"]})
    tree = BranchingTree.all_shared(twin.task_names, twin.num_layers)
    torch.manual_seed(0)
    net = BranchedNet.from_space(tree, twin)
    net.heads["digit2"].load_state_dict(net.heads["digit"].state_dict())
    a = gradient_agreement(net, train, twin, samples=128)
    assert a.shape == (7, 7) and np.allclose(a, a.T, atol=1e-5) and np.allclose(np.diag(a), 1.0)
    assert a[0, 6] == pytest.approx(1.0, abs=1e-5) and abs(a[0, 3]) < 0.9


def test_tag_measures_every_tenth_step_over_the_whole_training() -> None:
    space, bundle = _small(epochs=2, n=320)
    net, z, count = train_with_affinity(space, bundle, seed=0)
    steps = 2 * -(-len(bundle.train) // space.training.batch_size)
    assert count == -(-steps // 10) and z.shape == (6, 6) and np.isfinite(z).all()
    assert tag_total(z, np.zeros(6, dtype=int)) == pytest.approx(
        np.mean([np.mean([z[j, i] for j in range(6) if j != i]) for i in range(6)]))
    assert tag_total(z, np.arange(6)) == 0.0  # every task alone
    result = search_tree(space, bundle, seed=0, hparams=replace(space.search, method="tag"))
    BranchedNet.from_space(result.tree, space).load_state_dict(dict(result.weights))
    assert "Fifty" in sys.modules[type(METHODS.get("tag")).__module__].__doc__


def test_the_trained_search_is_the_default_and_a_second_search_trains_nothing(tmp_path) -> None:
    space, bundle = _small(epochs=2)
    assert space.search.method == "trained" and METHODS.get("trained").kind == "trained"
    result = search_tree(space, bundle, seed=0)
    assert result.derived is None and result.routing == {}
    saved = json.loads(result.save_candidates(tmp_path / "candidates.json").read_text())
    rows = saved["trees"]
    assert saved["chosen"] == result.tree.describe() and saved["noise"] >= 0
    assert "0-3: all" in [r["tree"] for r in rows] and result.tree.describe() in [r["tree"] for r in rows]
    assert {r["epochs"] for r in rows} <= {space.short_epochs, space.proxy_epochs}
    BranchedNet.from_space(result.tree, space).load_state_dict(dict(result.weights))
    from mtnas.train import _evidence

    trained = []
    original = _evidence.Evidence._train
    _evidence.Evidence._train = lambda self, claimed: trained.append(claimed) or original(self, claimed)
    try:
        again = search_tree(space, bundle, seed=0)
    finally:
        _evidence.Evidence._train = original
    assert again.tree == result.tree and trained == []  # every unit read back from the store


def test_two_level_trees_are_candidates_at_every_pair_of_branchable_layers() -> None:
    from mtnas.search import _trained

    tasks, layers = ("a", "b", "c", "d", "e", "f"), 4
    groups = (("a", "b"), ("c", "d"), ("e", "f"))
    harm = -np.ones((6, 6))
    harm[np.ix_([0, 1], [2, 3])] = harm[np.ix_([2, 3], [0, 1])] = 1.0  # a, b and c, d help each other
    np.fill_diagonal(harm, 0.0)

    class Run:  # the slice of a search that step 3 uses: what it trains
        def __init__(self) -> None:
            self.tasks, self.layers, self.trained = tasks, layers, []

        def train(self, trees):
            self.trained += list(trees)

    run = Run()
    _trained._depth_and_hierarchy(run, groups, 0, [0, 1, 2, 3], (4, 4, 4, 4), np.eye(6),
                                  PairModel(tasks, harm, np.zeros(6)))
    merged = (("e", "f"), ("a", "b", "c", "d"))
    for upper, deeper in itertools.combinations(range(layers), 2):
        two_level = BranchingTree.from_split_points(tasks, layers, {upper: merged, deeper: groups})
        assert two_level in run.trained and two_level.groups_at(upper) != two_level.groups_at(deeper)
    assert all(_trained._split(tasks, layers, layer, groups) in run.trained for layer in (1, 2, 3))
    wrong = (("a", "b"), ("c", "d", "e", "f"))  # the fitted pair model says these two harm each other
    assert not any(t.first_split() == wrong for t in run.trained)
