"""The budgeted search: it never spends more than its budget, survivors resume, proposers and rungs."""

from __future__ import annotations

import itertools
from dataclasses import replace

import optuna
import pytest
import torch

from mtnas.model import relative_cost
from mtnas.search import METHODS, BudgetedSearch, RungPruner, TableStore, rung_epochs, search_tree, table_space
from mtnas.search._table import TrainingTable
from mtnas.train import _evidence
from mtnas.tree import BranchingTree
from tests.test_trained_search import _small


def test_rungs_are_the_thirds_of_the_schedule() -> None:
    assert rung_epochs(15) == (5, 10, 15)
    assert rung_epochs(3) == (1, 2, 3)
    assert rung_epochs(1) == (1,)


@pytest.mark.parametrize("budget", [1.0, 2.5, 6.0])
def test_the_search_never_spends_more_than_its_budget_and_says_what_it_left_out(budget, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path))
    space, bundle = _small(epochs=3)
    result = search_tree(space, bundle, seed=0, hparams=replace(space.search, method="budget", budget=budget))
    assert 0 < result.spent <= budget + 1e-9
    c = result.candidates
    assert set(c["kind"]) <= {"all-shared", "agreement", "pair model", "depth", "two-level"}
    finished = [str(t) for t, e in zip(c["trees"], c["epochs"]) if e == 3]
    assert result.tree.describe() in finished  # the answer is trained to the end of its schedule
    if budget < 2:  # not even one grouping's rungs fit beside the all-shared tree
        assert list(c["kind"]) == ["all-shared"] and result.tree.first_split() is None


def test_a_survivor_resumes_its_training_and_the_ledger_counts_each_tree_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path))
    space, bundle = _small(epochs=3)
    trained: list[tuple[BranchingTree, int, int]] = []  # (tree, from epoch, to epoch) of every training
    original = _evidence.train_trees

    def counting(space, bundle, trees, *, resume=None, stop=None, **kw):
        starts = resume or [None] * len(trees)
        trained.extend((t, 0 if r is None else r.epoch, stop or space.training.epochs) for t, r in zip(trees, starts))
        return original(space, bundle, trees, resume=resume, stop=stop, **kw)

    monkeypatch.setattr(_evidence, "train_trees", counting)
    result = search_tree(space, bundle, seed=0, hparams=replace(space.search, method="budget", budget=6.0))
    reached: dict[str, int] = {}
    for tree, begin, end in trained:
        assert begin == reached.get(tree.key, 0)  # each training goes on where the tree's last one stopped
        reached[tree.key] = end
    assert reached[result.tree.key] == 3 and len(reached) > 2
    trees = {t.key: t for t, _, _ in trained}
    expected = sum(reached[k] * relative_cost(trees[k], space, "flops") for k in reached) / 3
    assert result.spent == pytest.approx(expected)  # each tree once, at the furthest epoch it reached


def test_a_budget_that_cannot_pay_the_first_rung_is_one_clear_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path))
    space, bundle = _small(epochs=3)
    with pytest.raises(ValueError, match=r"search.budget 0.1 does not pay for the all-shared tree's first rung"):
        search_tree(space, bundle, seed=0, hparams=replace(space.search, method="budget", budget=0.1))


def test_on_published_trainings_the_pair_model_proposes_alone_and_says_so() -> None:
    lines = ["# mtnas trainings table 1; better: lower", "network\tfidelity\tsplit\ttask\tvalue"]
    tasks = ("a", "b", "c", "d")
    for k in range(1, 5):
        for group in itertools.combinations(tasks, k):
            for task in group:
                harm = 0.5 if {"a", "b"} & set(group) and {"c", "d"} & set(group) else 0.0
                for fidelity in (1, 0.2, 0.4, 0.6):
                    value = 1.0 + harm + (1 - fidelity)
                    lines.append(f"{'+'.join(group)}\t{fidelity:g}\tval\t{task}\t{value}")
                lines.append(f"{'+'.join(group)}\t1\ttest\t{task}\t{1.0 + harm}")
    table = TrainingTable.parse("\n".join(lines), "t.tsv")
    space = table_space(table)
    result = METHODS.get("budget").search(space, None, seed=0, hparams=replace(space.search, budget=8.0),
                                          device="cpu", store=TableStore(table))
    assert any("no gradient agreement" in n for n in result.notes)
    assert result.spent <= 8.0 + 1e-9


def _rung_study(rungs: list[int]) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=RungPruner())
    study.set_user_attr("rungs", rungs)
    return study


def _report(trials: list[optuna.Trial], values: list[float], step: int) -> list[bool]:
    for trial, value in zip(trials, values):
        trial.report(value, step)  # every candidate of a rung reports before any is judged
    return [trial.should_prune() for trial in trials]


def test_the_rung_pruner_keeps_the_better_half_then_two_for_the_end() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _rung_study([2, 4, 6])
    trials = [study.ask() for _ in range(6)]
    assert _report(trials, [5, 4, 3, 2, 1, 0], 2) == [False] * 3 + [True] * 3  # the better half
    assert _report(trials[:3], [1, 3, 2], 4) == [True, False, False]  # two go on to the end
    assert _report(trials[1:3], [0, 1], 6) == [False, False]  # at the end nothing is left to decide
    small = _rung_study([2, 4, 6])
    assert _report([small.ask() for _ in range(3)], [1, 2, 3], 2) == [True, False, False]  # at least two
    assert _report([small.ask()], [9], 3) == [False]  # not a rung
    with pytest.raises(ValueError, match="keep must be in"):
        RungPruner(keep=0.0)


class _LeaderOnly(optuna.pruners.BasePruner):
    """Another rule in the rung rule's place: only a rung's best goes on; it records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []  # (step, how many reported at it)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        peers = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False) if step in t.intermediate_values]
        self.seen.append((step, len(peers)))
        return trial.intermediate_values[step] < max(peers)


def test_another_optuna_pruner_takes_the_rung_rules_place(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path))
    space, bundle = _small(epochs=3)
    hparams = replace(space.search, method="budget", budget=6.0)
    pruner = _LeaderOnly()
    result = BudgetedSearch(pruner=lambda: pruner).search(space, bundle, seed=0, hparams=hparams,
                                                          device=torch.device("cpu"))
    c = result.candidates
    beyond = [str(t) for t, e in zip(c["trees"], c["epochs"]) if e > 1]
    assert beyond == [result.tree.describe()]  # only the leader of the first rung trained on
    first = sum(e >= 1 for e in c["epochs"])
    assert pruner.seen[:first] == [(1, first)] * first  # judged once every candidate of the rung reported
    default = search_tree(space, bundle, seed=0, hparams=hparams).candidates
    assert sum(e > 1 for e in default["epochs"]) >= 2  # the rung rule lets the better half (at least two) on


def test_a_study_of_budgeted_searches_records_every_candidate_with_its_scores_at_the_rungs(tmp_path, monkeypatch) -> None:
    from mtnas.study import run_search
    from tests.test_study import _completed, _space

    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path / "cache"))
    space = _space(tmp_path, method="budget", budget=6.0, proxy_epochs=3)
    _, study = run_search(str(space), name="b", trials=3, runs_dir=tmp_path, progress=False)
    searched = {t.number: t for t in _completed(study) if not t.user_attrs.get("fixed_tree")}
    assert searched
    candidates = optuna.load_study(study_name="b:candidates", storage=study._storage).get_trials()
    assert {c.user_attrs["trial"] for c in candidates} == set(searched)  # each candidate names its search's trial
    for c in candidates:
        steps = sorted(c.intermediate_values)
        if c.state == optuna.trial.TrialState.COMPLETE:  # trained to the end: its curve ends with its value
            assert steps == [1, 2, 3] and c.value == c.intermediate_values[3]
        else:  # stopped before the end, by the rung rule or by the budget (its first rung not paid: no step)
            assert c.state == optuna.trial.TrialState.PRUNED and steps == list(range(1, len(steps) + 1)) and len(steps) < 3
            allowed = ("pruner", "budget") if steps else ("budget",)
            assert c.user_attrs["stopped_by"] in allowed
            assert c.value == (c.intermediate_values[steps[-1]] if steps else None)  # its last score, as Optuna keeps
    for number, trial in searched.items():  # the tree a search returned is one of its candidates, trained to the end
        assert any(c.user_attrs["trial"] == number and c.user_attrs["tree"] == trial.user_attrs["tree"]
                   and c.state == optuna.trial.TrialState.COMPLETE for c in candidates)


class _Finals:
    """The part of a budgeted search's pool that settling the final choice reads: two finals, their
    scores and costs, and no budget left for second seeds."""

    def __init__(self, scores: dict[BranchingTree, float], costs: dict[BranchingTree, float]) -> None:
        from types import SimpleNamespace

        from mtnas.search._budgeted import Candidate

        self.epochs, self.seed, self.skipped = 3, 0, []
        self.finals = [Candidate(t, "agreement", record=None, results={3: None}) for t in scores]
        self._scores = {t.key: v for t, v in scores.items()}
        self.evidence = SimpleNamespace(cost=lambda tree: costs[tree])

    def at(self, stop: int) -> list:
        return self.finals

    def scores(self, cands, stop: int) -> dict[str, float]:
        return self._scores

    def left(self) -> float:
        return 0.0


@pytest.mark.parametrize("noise, chosen", [(1.0, "cheaper"), (0.1, "better")])
def test_a_final_tie_the_budget_cannot_settle_goes_to_the_cheaper_tree(noise, chosen, monkeypatch) -> None:
    from mtnas.search import _budgeted

    t = ("a", "b", "c")
    better = BranchingTree.from_split_points(t, 2, {0: (("a",), ("b", "c"))})
    cheaper = BranchingTree.all_shared(t, 2)
    pool = _Finals({better: -1.0, cheaper: -1.3}, {better: 2.0, cheaper: 1.0})
    monkeypatch.setattr(_budgeted, "_noise", lambda *a: noise)  # the noise of the difference of the two
    answer, means = _budgeted._settle(pool, pool.finals[0])
    assert answer.tree == {"cheaper": cheaper, "better": better}[chosen] and means == {}
    assert (pool.skipped == ["second seeds of a tie within noise (0.30 points)"]) == (chosen == "cheaper")


def test_search_budget_on_the_command_line_sets_the_budgeted_searchs_budget(tmp_path, capfd, monkeypatch) -> None:
    import yaml

    from mtnas.cli import main
    from tests.test_hostile_inputs import _cli_error
    from tests.test_study import _space

    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path / "cache"))
    space = str(_space(tmp_path, proxy_epochs=3))
    err = _cli_error(["search", space, "--budget", "2", "--runs-dir", str(tmp_path), "--quiet"], capfd)
    assert "only search.method 'budget' (or --strategy pool) reads" in err and "--set search.method=budget" in err
    assert not (tmp_path / "tiny").exists()
    code = main(["search", space, "--budget", "2.5", "--set", "search.method=budget", "--trials", "3",
                 "--runs-dir", str(tmp_path), "--name", "b", "--quiet"])
    assert code == 0
    saved = yaml.safe_load((tmp_path / "b" / "space.yaml").read_text())
    assert saved["search"]["method"] == "budget" and saved["search"]["budget"] == 2.5


def test_the_proposers_are_the_ones_named_in_their_order(tmp_path, monkeypatch) -> None:
    from mtnas.search import PROPOSERS

    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path))
    space, bundle = _small(epochs=3)
    calls: list[str] = []
    for name in PROPOSERS.names():
        original = PROPOSERS.get(name)
        monkeypatch.setitem(PROPOSERS._entries, name, lambda p, name=name, f=original: (calls.append(name), f(p)))
    hparams = replace(space.search, method="budget", budget=10.0, proposers=("tag", "depth", "agreement"))
    result = search_tree(space, bundle, seed=0, hparams=hparams)
    assert calls == ["tag", "depth", "agreement"]
    kinds = set(result.candidates["kind"])
    assert "tag" in kinds and not kinds & {"pair model", "two-level"}  # one left out proposes nothing


def test_the_tag_proposer_reads_tags_affinity_off_the_all_shared_networks_first_rung(tmp_path, monkeypatch) -> None:
    from mtnas.model import BranchedNet
    from mtnas.search import mean_tag_affinity
    from mtnas.search._tag import tag_affinity

    monkeypatch.setenv("MTNAS_CACHE_DIR", str(tmp_path))
    space, bundle = _small(epochs=3)
    torch.manual_seed(0)
    net = BranchedNet.from_space(BranchingTree.all_shared(space.task_names, space.num_layers), space)
    data = bundle.train.select(slice(0, 64))
    z = mean_tag_affinity(net, data, space, samples=64, batch_size=32)
    batches = [tag_affinity(net, b, space, space.training.lr) for b in data.batches(32)]
    assert z.shape == (len(space.tasks),) * 2 and z == pytest.approx(torch.stack(batches).mean(0).numpy(), abs=1e-6)
    hparams = replace(space.search, method="budget", budget=10.0, proposers=("tag",))
    computed = []
    monkeypatch.setattr("mtnas.search._proposers.mean_tag_affinity",
                        lambda *a, **k: computed.append(1) or mean_tag_affinity(*a, **k))
    first = search_tree(space, bundle, seed=0, hparams=hparams)
    again = search_tree(space, bundle, seed=0, hparams=hparams)
    assert computed == [1]  # kept with the all-shared unit: the second search reads it
    assert first.tree == again.tree and "tag" in set(first.candidates["kind"])


def test_an_unknown_or_repeated_proposer_is_one_line_naming_the_key(tmp_path) -> None:
    from mtnas.core import ConfigError
    from mtnas.search import check_search_space
    from mtnas.space import load_space
    from tests.test_study import _space

    path = str(_space(tmp_path))
    with pytest.raises(ConfigError, match=r"search.proposers: unknown proposer 'agrement' \(did you mean 'agreement'"):
        check_search_space(load_space(path, overrides=["search.proposers=[agrement]"]))
    with pytest.raises(ConfigError, match=r"search.proposers: each proposer once"):
        check_search_space(load_space(path, overrides=["search.proposers=[depth,depth]"]))
