"""Study plots and routing evolution, tested as data: the Pareto front, the fixed baselines, the
routing series of a real (tiny) search, and the graceful skips of the Optuna plots."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import optuna
import pytest
import yaml

from mtnas.core import MtnasError
from mtnas.report import (
    ParetoPoint,
    draw_history,
    draw_importances,
    draw_pareto,
    front_label,
    pareto_plot_data,
    tree_label,
)
from mtnas.viz import draw_routing, routing_evolution
from tests.conftest import write_tiny_space

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_run(root: Path, *, trials: int = 3, strategy: str = "differentiable",
             method: str = "affinity") -> tuple[Path, optuna.Study]:
    """A real search on the tiny space: the two enqueued baselines, then searched trees (by a
    supernet method by default, whose trials record their routing)."""
    from mtnas.study import run_search

    space = write_tiny_space(root / "tiny.yaml")
    data = yaml.safe_load(space.read_text())
    data["search"].update({"epochs": 3, "warmup_epochs": 1, "proxy_epochs": 1, "method": method})
    space.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:  # session-scoped callers: the autouse cache fixture is not active
        mp.setenv("MTNAS_CACHE_DIR", str(root / "cache"))
        run, study = run_search(str(space), name="r", trials=trials, strategy=strategy, runs_dir=root, progress=False)
    return run.root, study


@pytest.fixture(scope="session")
def searched_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """One tiny search for the whole session, shared by the xdist workers (built under a file
    lock by the first that needs it). Read-only: tests that write into a run folder copy it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = (base if worker_id == "master" else base.parent) / "mtnas-tiny-search"
    with FileLock(f"{shared}.lock"):
        if not (shared / "r" / "pareto.json").is_file():  # not built yet, or a build that failed
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            tiny_run(shared)
    return shared / "r"


@pytest.fixture
def searched(searched_run: Path) -> tuple[Path, optuna.Study]:
    from mtnas.study import SearchRun, load_study

    return searched_run, load_study(SearchRun(searched_run))


def _new_study() -> optuna.Study:
    """An in-memory study with mtnas's default objectives, by name."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["delta_m", "flops"])
    return study


def _study(rows: list[tuple[float, float, str, dict]]) -> optuna.Study:
    """An in-memory two-objective study; each row: delta-m, FLOPs, tree text, extra user attrs."""
    study = _new_study()
    for dm, flops, tree, extra in rows:
        study.add_trial(optuna.trial.create_trial(
            values=[dm, flops], user_attrs={"delta_m": dm, "flops": flops, "params": int(flops / 10), "tree": tree,
                                            **extra}))
    return study


# --- Pareto data -------------------------------------------------------------------------------


def test_pareto_data_flags_exactly_the_non_dominated_trials() -> None:
    study = _study([
        (-20.0, 100.0, "0-3: all", {"fixed_tree": "all-shared"}),
        (-1.0, 900.0, "0-3: each", {"fixed_tree": "independent"}),
        (-5.0, 300.0, "0-1: all | 2-3: a / b", {}),
        (-6.0, 400.0, "0-2: all | 3: a / b", {}),  # dominated by trial 2
        (-20.0, 100.0, "0-3: all", {"reused_from": 0}),  # a tie: not dominated, same tree
        (-1.0, 950.0, "0-3: a,b / c", {}),  # dominated by trial 1 (equal delta-m, more FLOPs)
    ])
    data = pareto_plot_data(study)
    assert [p.trial for p in data.points] == list(range(6))
    assert {p.trial for p in data.points if p.pareto} == {0, 1, 2, 4} == {t.number for t in study.best_trials}
    assert [p.trial for p in data.front] == [0, 2, 1]  # one per tree, by cost: the step line
    assert [p.delta_m for p in data.front] == sorted(p.delta_m for p in data.front)
    assert {p.trial: p.fixed for p in data.points if p.fixed} == {0: "all-shared", 1: "independent"}
    assert data.points[4].reused_from == 0
    assert data.cost == "flops" and data.cost_label == "FLOPs"


def test_pareto_data_of_a_real_search(searched: tuple[Path, optuna.Study], tmp_path: Path) -> None:
    _, study = searched
    data = pareto_plot_data(study)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(data.points) == len(done) == 3
    assert {p.trial for p in data.points if p.pareto} == {t.number for t in study.best_trials}
    assert data.points[0].fixed == "all-shared" and data.points[1].fixed == "independent"
    assert data.points[2].fixed is None
    for p, t in zip(data.points, done):
        assert (p.delta_m, p.cost) == (pytest.approx(t.values[0]), pytest.approx(t.values[1]))
    assert data.tasks == ("digit", "parity", "ge5", "orientation", "frequency", "diagonal")
    out = draw_pareto(data, tmp_path / "pareto.png")
    assert out.read_bytes().startswith(PNG_MAGIC)


#: a tree as ``describe()`` writes it -> its label in the Pareto plot (task names whole, never cut to prefixes)
TREE_LABELS = {
    "0-3: each": "0-3: each",
    "0-2: all | 3: digit,parity,ge5 / orientation,frequency,diagonal":
        "0-2: all | 3: digit,parity,ge5 / orientation,frequency,diagonal",
    "0: all | 1: left_digit,left_parity,left_ge5 / right_digit,right_parity,right_ge5 | 2-3: each":
        "0: all | 1: left_digit +2 / right_digit +2 | 2-3: each",
    " | ".join(f"{i}: " + " / ".join(f"task{j}_{i}" for j in range(8)) for i in range(4)):
        "0: task0_0 / task1_0 / task2_0 / task3_0 / task4_0 / task5_0 / ta\u2026",
}


@pytest.mark.parametrize("tree", list(TREE_LABELS))
def test_a_front_label_keeps_task_names_whole(tree: str) -> None:
    assert tree_label(tree) == TREE_LABELS[tree] and len(tree_label(tree)) <= 66


def test_the_plot_marks_the_references_and_the_tree_export_picks(searched: tuple[Path, optuna.Study]) -> None:
    from mtnas.study import choose_trial

    _, study = searched
    data = pareto_plot_data(study)
    assert data.pick == choose_trial(study).number and data.pick not in {p.trial for p in data.points if p.fixed}
    pick = data.pick_point
    labels = [front_label(p, pick) for p in data.labelled]
    marked = [label for label in labels if "export's pick" in label]
    # its own label, or (its tree on the front as another trial's) that trial's label says so
    assert len(marked) == 1 and (marked[0].startswith(f"trial {pick.trial} (") or
                                 f"export's pick: trial {pick.trial}" in marked[0])
    assert any(label.startswith("trial 0 (all-shared") and label.endswith(": 0-3: all") for label in labels)
    shared = ParetoPoint(0, 1.0, 0.0, "0-3: all", "all-shared", True, None)
    assert front_label(shared, shared._replace(trial=5, fixed=None)) == (
        "trial 0 (all-shared; export's pick: trial 5): 0-3: all")
    only_references = _study([(-20.0, 100.0, "0-3: all", {"fixed_tree": "all-shared"})])
    assert pareto_plot_data(only_references).pick is None  # nothing searched: export has no default pick


# --- Optuna plots ------------------------------------------------------------------------------


def _with_params(values: list[float]) -> optuna.Study:
    study = _new_study()
    dist = {"lam": optuna.distributions.FloatDistribution(0.0, 1.0)}
    study.add_trial(optuna.trial.create_trial(values=[-9.0, 1.0], user_attrs={"fixed_tree": "all-shared"}))
    for i, v in enumerate(values):
        study.add_trial(optuna.trial.create_trial(values=[v, 2.0], params={"lam": i / 10}, distributions=dist))
    return study


def test_history_and_importances_draw_and_leave_the_style_alone(tmp_path: Path) -> None:
    before = dict(matplotlib.rcParams)
    study = _with_params([-3.0, -1.0, -2.0, -0.5])  # the fixed trial has no params: left out
    assert draw_history(study, tmp_path / "h.png").read_bytes().startswith(PNG_MAGIC)
    assert draw_importances(study, tmp_path / "i.png").read_bytes().startswith(PNG_MAGIC)
    assert matplotlib.rcParams["axes.facecolor"] == before["axes.facecolor"]  # optuna's ggplot style stays inside


def test_importances_are_skipped_when_not_computable(tmp_path: Path) -> None:
    assert draw_importances(_with_params([-1.0]), tmp_path / "a.png") is None  # one trial with params
    assert draw_importances(_with_params([-1.0, -1.0, -1.0]), tmp_path / "b.png") is None  # delta-m all equal
    sampled = _new_study()  # define-by-run: no common params
    for i in range(3):
        dist = {f"l0_t{i}": optuna.distributions.IntDistribution(0, 1)}
        sampled.add_trial(optuna.trial.create_trial(values=[-i, 1.0], params={f"l0_t{i}": 1}, distributions=dist))
    assert draw_importances(sampled, tmp_path / "c.png") is None
    assert draw_history(optuna.create_study(), tmp_path / "d.png") is None
    assert not list(tmp_path.iterdir())


# --- routing evolution -------------------------------------------------------------------------


def test_routing_evolution_matches_the_npz(searched: tuple[Path, optuna.Study], tmp_path: Path) -> None:
    root, _ = searched
    path = root / "trials" / "0002" / "routing.npz"
    evo = routing_evolution(path)
    with np.load(path) as raw:
        arrays = {k: raw[k] for k in raw.files}
    epochs = arrays["heads"].shape[0]
    assert evo.tasks == tuple(arrays["tasks"])
    assert evo.heads.shape == arrays["heads"].shape and len(evo.epochs) == epochs
    routed = sorted(int(k[5:]) for k in arrays if k.startswith("layer"))
    assert [lr.layer for lr in evo.layers] == routed
    for lr in evo.layers:
        assert lr.probs.shape == arrays[f"layer{lr.layer}"].shape
        np.testing.assert_allclose(lr.probs.sum(-1), 1.0, atol=1e-5)  # per child, per epoch
        assert lr.used.shape == lr.parents.shape == (lr.probs.shape[1],) and lr.used.any()
    np.testing.assert_allclose(evo.heads.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(evo.tau, arrays["tau"])
    np.testing.assert_allclose(evo.expected_cost, arrays["expected_cost"])
    assert all(c.shape == (epochs,) and c.min() >= 1 for c in evo.nodes_used.values())
    assert draw_routing(evo, tmp_path / "routing.png").read_bytes().startswith(PNG_MAGIC)


def _onehot(index: list[int], k: int) -> np.ndarray:
    return np.eye(k)[index]


def test_routing_evolution_finds_where_and_when_the_tree_split(tmp_path: Path) -> None:
    # 4 epochs, 3 tasks, 2 layers of 2 nodes; layer 1 routes node k -> parent k (layer 0 branches).
    uniform_heads = np.full((3, 2), 0.5)
    heads = np.stack([uniform_heads, uniform_heads, _onehot([0, 0, 1], 2) * 0.8 + 0.1, _onehot([0, 0, 1], 2) * 0.8 + 0.1])
    layer1 = np.stack([np.full((2, 2), 0.5)] * 2 + [np.eye(2) * 0.8 + 0.1] * 2)
    np.savez(tmp_path / "routing.npz", tasks=np.array(["a", "b", "c"]), heads=heads, layer1=layer1,
             tau=np.array([1.0, 1.0, 0.5, 0.2]), expected_cost=np.array([1.5, 1.5, 1.2, 1.1]))
    evo = routing_evolution(tmp_path / "routing.npz")
    assert [lr.layer for lr in evo.layers] == [1]
    assert evo.layers[0].used.tolist() == [True, True] and evo.layers[0].parents.tolist() == [0, 1]
    assert {k: v.tolist() for k, v in evo.nodes_used.items()} == {"layer 0": [1, 1, 2, 2], "layer 1": [1, 1, 2, 2]}
    assert evo.settled_epoch == 2  # uniform (argmax ties to node 0) until epoch 2, split from then on


def test_routing_evolution_of_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(MtnasError, match="no routing history"):
        routing_evolution(tmp_path / "nothing.npz")


@pytest.fixture(autouse=True)
def _no_open_figures() -> Iterator[None]:
    import matplotlib.pyplot as plt

    yield
    assert not plt.get_fignums(), "a drawing function left a figure open"
