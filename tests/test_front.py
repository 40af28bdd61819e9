"""The Pareto front and the picks read objectives by name: their order in the study does not matter."""

from __future__ import annotations

import warnings

import optuna
import pytest

from mtnas.core import MtnasError
from mtnas.report import pareto_plot_data
from mtnas.space import SearchConfig
from mtnas.study import (
    OBJECTIVES,
    choose_trial,
    front_point,
    objective_names,
    pareto,
    parse_objectives,
    searched_front,
)

# (delta-m, FLOPs, params) of five trees: an elbow front with one dominated trial
TRIALS = [(-20.0, 100.0, 10), (-6.0, 250.0, 25), (-5.0, 300.0, 30), (-7.0, 400.0, 40), (-1.0, 900.0, 90)]


def _study(names: list[str], trials: list[tuple] = TRIALS, fixed: dict[int, str] | None = None) -> optuna.Study:
    study = optuna.create_study(directions=[OBJECTIVES.get(n).direction for n in names])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
    for i, (dm, flops, params) in enumerate(trials):
        attrs = {"delta_m": dm, "flops": flops, "params": params, "tree_key": f"t{i}",
                 **({"fixed_tree": fixed[i]} if fixed and i in fixed else {})}
        study.add_trial(optuna.trial.create_trial(values=[OBJECTIVES.get(n).value(attrs) for n in names],
                                                  user_attrs=attrs))
    return study


@pytest.mark.parametrize("pick", ["trade-off", "knee", "quality", "cheapest"])
def test_both_objective_orders_give_the_same_front_and_picks(pick: str) -> None:
    forward, backward = _study(["delta_m", "flops"]), _study(["flops", "delta_m"])
    assert objective_names(backward) == ["flops", "delta_m"]
    assert [t.number for t in pareto(forward)] == [t.number for t in pareto(backward)] == [4, 2, 1, 0]
    assert front_point(backward, backward.trials[2]) == (-5.0, 300.0)
    assert choose_trial(forward, pick=pick).number == choose_trial(backward, pick=pick).number
    assert pareto_plot_data(forward).front == pareto_plot_data(backward).front


def test_the_knee_is_the_elbow_whatever_the_order() -> None:
    assert choose_trial(_study(["flops", "delta_m"]), pick="knee").number == 1


def test_the_trade_off_pick_is_what_the_default_search_would_choose() -> None:
    # relative costs 2.5, 3, 4 and 9 all-shared networks (trial 0 is the all-shared reference)
    study = _study(["delta_m", "flops"], fixed={0: "all-shared"})
    gain = SearchConfig().gain_per_cost  # no space recorded: the default
    scores = {i: dm - gain * (flops / 100.0 - 1) for i, (dm, flops, _) in enumerate(TRIALS) if i}
    assert choose_trial(study).number == max((i for i in scores if i != 3), key=scores.get)  # trade-off by default
    study.set_user_attr("mtnas", {"space": {"search": {"gain_per_cost": 0.5}}})  # a space that values quality
    assert choose_trial(study).number == 4
    without = _study(["delta_m", "flops"])  # no all-shared reference to measure costs by: the knee
    assert choose_trial(without).number == choose_trial(without, pick="knee").number


def test_picks_and_the_api_front_leave_the_references_out() -> None:
    # the cheapest tree (trial 0) and the best delta-m (trial 4) are the enqueued references
    study = _study(["delta_m", "flops"], fixed={0: "all-shared", 4: "independent"})
    assert [t.number for t in pareto(study)] == [4, 2, 1, 0]  # the study's front keeps them
    assert [t.number for t in searched_front(study)] == [2, 1]
    assert choose_trial(study, pick="quality").number == 2
    assert choose_trial(study, pick="cheapest").number == 1
    assert choose_trial(study, 4).number == 4  # a reference by its number (--trial)


def test_a_searched_tree_dominated_only_by_a_reference_is_on_the_searched_front() -> None:
    trials = [(-20.0, 100.0, 10), (0.0, 900.0, 90), (-9.0, 500.0, 50), (-8.0, 400.0, 40)]  # 3 dominates 2
    study = _study(["delta_m", "flops"], trials, fixed={0: "all-shared", 1: "independent"})
    assert [t.number for t in pareto(study)] == [1, 3, 0]
    assert [t.number for t in searched_front(study)] == [3]


def test_no_searched_trial_is_one_line_naming_the_references() -> None:
    study = _study(["delta_m", "flops"], TRIALS[:2], fixed={0: "all-shared", 1: "independent"})
    with pytest.raises(MtnasError, match=r"no completed searched trial yet \(only the references, all-shared: "
                                         r"--trial 0; independent: --trial 1\)"):
        choose_trial(study, pick="knee")


def test_params_as_the_cost_objective() -> None:
    study = _study(["params", "delta_m"])
    assert front_point(study, study.trials[3]) == (-7.0, 40.0)
    assert pareto_plot_data(study).cost == "params"


@pytest.mark.parametrize("text, message", [
    ("", "give at least one"),
    ("flops", "delta_m must be one of them"),
    ("delta_m,flop", "did you mean 'flops'"),
    ("delta_m,delta_m", "names an objective twice"),
])
def test_bad_objectives_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(MtnasError, match=message):
        parse_objectives(text)
