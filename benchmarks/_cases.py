"""The cases of ``benchmarks/recovery_suite.py``: a built-in space, the reference trees whose training
verifies its planted ground truth (``claims``), and the recovery criterion of a searched tree.

A claim compares two reference trees, trained with the space's own budget by
``mtnas.train.train_tree`` on each seed, by the case's measure (mean validation accuracy over the
tasks; delta-m where tasks have other metrics; or the search's trade-off score, delta-m less
``search.gain_per_cost`` points per all-shared network's worth of extra FLOPs, where the right
answer depends on what a split costs): ``beats`` holds when the first is
better on average by more than ``BEAT`` points and on every seed; ``ties`` holds when the mean
difference is within ``TIE`` points (the noise of these small trainings: one to two points).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sklearn.metrics import adjusted_rand_score

from mtnas.model import tree_cost
from mtnas.tree import BranchingTree

BEAT = 0.5  # points of mean accuracy
TIE = 1.0

Groups = tuple[tuple[str, ...], ...]


def ari(partition: Sequence[Sequence[str]] | None, planted: Sequence[Sequence[str]], tasks: Sequence[str]) -> float:
    """Adjusted Rand index of ``partition`` against ``planted`` over ``tasks`` (0 for None)."""
    if partition is None:
        return 0.0
    label = {t: i for i, g in enumerate(partition) for t in g}
    truth = {t: i for i, g in enumerate(planted) for t in g}
    return float(adjusted_rand_score([truth[t] for t in tasks], [label[t] for t in tasks]))


@dataclass(frozen=True)
class Claim:
    """``better`` beats (or ties) ``worse`` by the case's measure."""

    better: str
    worse: str
    kind: str  # "beats" or "ties"


@dataclass(frozen=True)
class Case:
    """One planted structure.

    Attributes:
        name: the case's name in the suite.
        space: the built-in space it searches.
        about: one line on the structure and the right answer.
        references: space, bundle -> reference trees by label, trained by ``--truth``.
        claims: what training those trees must show for the ground truth to hold.
        criterion: (tree, space, bundle) -> (recovered, detail) for a searched tree.
        measure: what ``claims`` compare: ``accuracy`` (mean validation accuracy over the tasks,
            in points), ``delta_m`` (validation delta-m against single-task networks of the same
            budget, in points: for tasks without an accuracy) or ``score`` (per seed, that
            delta-m less ``search.gain_per_cost`` times the tree's FLOPs over the all-shared
            tree's, minus 1: the trade-off the trained search maximises).
    """

    name: str
    space: str
    about: str
    references: Callable[[object, object], dict[str, BranchingTree]]
    claims: tuple[Claim, ...]
    criterion: Callable[[BranchingTree, object, object], tuple[bool, str]]
    measure: str = "accuracy"


# -- a. digit_gratings ----------------------------------------------------------------------------

DG_WRONG = (("digit", "parity", "orientation"), ("ge5", "frequency", "diagonal"))


def _dg_refs(space, bundle) -> dict[str, BranchingTree]:
    t, n, planted = space.task_names, space.num_layers, bundle.planted_groups
    return {
        "all-shared": BranchingTree.all_shared(t, n),
        "planted after layer 1": BranchingTree.from_split_points(t, n, {1: planted}),
        "wrong after layer 1": BranchingTree.from_split_points(t, n, {1: DG_WRONG}),
    }


def _first_split_is_planted(tree, space, bundle, planted=None) -> tuple[bool, str]:
    score = ari(tree.first_split(), planted or bundle.planted_groups, tree.tasks)
    return score == 1.0, f"ARI {score:.2f} at layer {tree.first_split_layer}"


# -- b. three factors of unequal difficulty -----------------------------------------------------

DIGIT, GRATING, LEVEL = ("digit", "parity", "ge5"), ("orientation", "frequency", "diagonal"), ("level", "bright", "level_odd")
LEVELS_WRONG = tuple(zip(DIGIT, GRATING, LEVEL))  # each group one task of each factor


def _levels_refs(space, bundle) -> dict[str, BranchingTree]:
    t, n = space.task_names, space.num_layers
    return {
        "all-shared": BranchingTree.all_shared(t, n),
        "3 factors after layer 1": BranchingTree.from_split_points(t, n, {1: (DIGIT, GRATING, LEVEL)}),
        "digit | grating+level after 1": BranchingTree.from_split_points(t, n, {1: (DIGIT, GRATING + LEVEL)}),
        "digit+level | grating after 1": BranchingTree.from_split_points(t, n, {1: (DIGIT + LEVEL, GRATING)}),
        "wrong 3 groups after layer 1": BranchingTree.from_split_points(t, n, {1: LEVELS_WRONG}),
    }


def _hard_groups_separated(tree, space, bundle) -> tuple[bool, str]:
    """At the first split the digit tasks are in one group, the grating tasks in another, and no
    level task is with the digit tasks. The level tasks are easy (100% on any path) but not
    harmless: sharing with them costs the digit tasks ~9 points (``--truth``), so they belong with
    the gratings or alone."""
    split = tree.first_split()
    if split is None:
        return False, "all-shared"
    group = {t: i for i, g in enumerate(split) for t in g}
    d, g = {group[t] for t in DIGIT}, {group[t] for t in GRATING}
    level = ["D" if group[t] in d else "G" if group[t] in g else "o" for t in LEVEL]
    ok = len(d) == 1 and len(g) == 1 and d != g and "D" not in level
    return ok, f"digit {'whole' if len(d) == 1 else 'scattered'}, grating {'whole' if len(g) == 1 else 'scattered'}, " \
               f"{'apart' if d.isdisjoint(g) else 'together'}; levels {''.join(level)} at layer {tree.first_split_layer}"


# -- c. synth_attributes: 4 groups, each worth its own narrow last layers ----------------------
#
# Judged by the search's trade-off score (``measure="score"``). Each group's attributes read its
# own four gratings; the space's layer 2 is a bottleneck of 4 channels, room for one group's four
# strengths but not for two groups' eight, and a copy of layers 2-4 costs 0.21 of the all-shared
# network's FLOPs. So the planted groups split at layer 2 beat every cheaper tree (fewer groups,
# or the split one layer later, where the shared bottleneck must carry all 16 strengths) and
# every dearer one (8 groups, or the split one layer earlier, copying the wide layer 1). The
# margins (``--truth``) are in benchmarks/README.md ("synth_attributes rebuilt").

#: The split layer of the planted groups, the best of the references.
ATTR_LAYER = 2
ATTR_BEST = f"planted at {ATTR_LAYER}"


def _attr_refs(space, bundle) -> dict[str, BranchingTree]:
    t, n, planted, at = space.task_names, space.num_layers, bundle.planted_groups, ATTR_LAYER
    wrong = tuple(tuple(t[i:i + 10]) for i in range(0, len(t), 10))  # attr j is in group j % 4: 2-3 of each
    halves = tuple(half for g in planted for half in (g[:len(g) // 2], g[len(g) // 2:]))
    return {
        "all-shared": BranchingTree.all_shared(t, n),
        f"planted at {at - 1}": BranchingTree.from_split_points(t, n, {at - 1: planted}),
        ATTR_BEST: BranchingTree.from_split_points(t, n, {at: planted}),
        f"planted at {at + 1}": BranchingTree.from_split_points(t, n, {at + 1: planted}),
        f"wrong at {at}": BranchingTree.from_split_points(t, n, {at: wrong}),
        f"3 groups (0+1) at {at}": BranchingTree.from_split_points(t, n, {at: (planted[0] + planted[1], *planted[2:])}),
        f"2 groups (0+1 | 2+3) at {at}": BranchingTree.from_split_points(
            t, n, {at: (planted[0] + planted[1], planted[2] + planted[3])}),
        f"8 groups (halves) at {at}": BranchingTree.from_split_points(t, n, {at: halves}),
        f"planted at {at}, halves at {at + 1}": BranchingTree.from_split_points(t, n, {at: planted, at + 1: halves}),
        f"pairs at {at}, planted at {at + 1}": BranchingTree.from_split_points(
            t, n, {at: (planted[0] + planted[1], planted[2] + planted[3]), at + 1: planted}),
    }


# -- d. depth: left | right digits, shared stroke features --------------------------------------

LEFT = ("left_digit", "left_parity", "left_ge5")
RIGHT = ("right_digit", "right_parity", "right_ge5")
DEPTH_WRONG = (("left_digit", "left_parity", "right_ge5"), ("right_digit", "right_parity", "left_ge5"))
#: The split layers that count as right: after the shared early (stroke) layers.
DEPTH_LAYERS = (2, 3)


def _depth_refs(space, bundle) -> dict[str, BranchingTree]:
    t, n = space.task_names, space.num_layers
    refs = {"all-shared": BranchingTree.all_shared(t, n)}
    for layer in range(n):
        refs[f"left|right at layer {layer}"] = BranchingTree.from_split_points(t, n, {layer: (LEFT, RIGHT)})
    refs["wrong at layer 2"] = BranchingTree.from_split_points(t, n, {2: DEPTH_WRONG})
    return refs


def _depth_criterion(tree, space, bundle) -> tuple[bool, str]:
    score = ari(tree.first_split(), (LEFT, RIGHT), tree.tasks)
    layer = tree.first_split_layer
    return score == 1.0 and layer in DEPTH_LAYERS, f"ARI {score:.2f} at layer {layer}"


# -- e. null: every task reads the same content -------------------------------------------------
#
# No split buys anything: halves tie all-shared, and independent networks, each learning the
# same four gratings from its own gradients alone, fall behind it.

def _null_refs(space, bundle) -> dict[str, BranchingTree]:
    t, n = space.task_names, space.num_layers
    half = len(t) // 2
    return {
        "all-shared": BranchingTree.all_shared(t, n),
        "halves after layer 1": BranchingTree.from_split_points(t, n, {1: (t[:half], t[half:])}),
        "independent": BranchingTree.independent(t, n),
    }


# -- f. kinds: digit | grating, each factor read by tasks of four kinds -----------------------
#
# The data plant digit | grating, but what training says is best is another tree: under the
# space's equal loss balancing ``ink`` (a count regression, MSE ~1000 against ~1 for the others)
# takes every layer it shares (each partner loses 70-90% beside it), and ``phase`` (a regression
# whose relative error swings widely) does best alone. Every grouping of the six tasks into at most
# three groups at the input was trained (``benchmarks/exhaustive.py --space digit_grating_kinds
# --layer 0``, 2 seeds) and the ten best again on six seeds: ``best`` (the classification and dense
# tasks together, ``ink`` alone, ``phase`` alone) -1.42 +- 1.02 delta-m, ``runner-up`` (``stroke``
# with ``ink``) -2.89 +- 0.58, the tree the previous truth named best (``phase`` with the grating
# map) -5.83 +- 2.81. The top two are within one training's noise of each other and both count.

KINDS_PLANTED = (("digit", "stroke", "ink"), ("orientation", "grating_map", "phase"))
KINDS_BEST = (("digit", "stroke", "orientation", "grating_map"), ("ink",), ("phase",))
KINDS_RUNNER_UP = (("digit", "orientation", "grating_map"), ("stroke", "ink"), ("phase",))
KINDS_PHASE_WITH_MAP = (("digit", "stroke", "orientation"), ("ink",), ("grating_map", "phase"))
#: Grouped by kind, not by factor: the classifications | the dense tasks | the regressions.
KINDS_BY_KIND = (("digit", "orientation"), ("stroke", "grating_map"), ("ink", "phase"))


def _kinds_refs(space, bundle) -> dict[str, BranchingTree]:
    t, n = space.task_names, space.num_layers
    at_input = {"planted": KINDS_PLANTED, "best": KINDS_BEST, "runner-up": KINDS_RUNNER_UP,
                "phase with the map": KINDS_PHASE_WITH_MAP, "by kind": KINDS_BY_KIND}
    return {"all-shared": BranchingTree.all_shared(t, n),
            **{f"{label} at layer 0": BranchingTree.from_split_points(t, n, {0: groups})
               for label, groups in at_input.items()}}


def _kinds_criterion(tree, space, bundle) -> tuple[bool, str]:
    split = tree.first_split()
    found = frozenset(map(frozenset, split)) if split else None
    good = {frozenset(map(frozenset, g)): label for g, label in ((KINDS_BEST, "best"), (KINDS_RUNNER_UP, "runner-up"))}
    return found in good, f"{good.get(found, 'neither best nor runner-up')} at layer {tree.first_split_layer}"


# -- g. two levels: digit | grating early, then left | right deeper -----------------------------
#
# Judged by the search's trade-off score (``measure="score"``): a deeper split must buy its
# FLOPs. Splitting left | right already at layer 1 costs a copy of layer 1 that the digit tasks do
# not need (they read the same strokes on both sides); keeping the gratings with the digits
# through layer 1 costs the digit tasks more than that copy. The margins (``--truth``) are in the
# dataset's docstring (``mtnas/data/datasets/_multi_digit_gratings.py``) and benchmarks/README.md.

TWO_LEFT, TWO_RIGHT = ("left_digit", "left_parity"), ("right_digit", "right_parity")
TWO_DIGITS, TWO_GRATINGS = TWO_LEFT + TWO_RIGHT, ("orientation", "frequency")
#: The deep split of the wrong two-level tree: each group holds one side's class and the other's parity.
TWO_MIXED = (("left_digit", "right_parity"), ("right_digit", "left_parity"))
#: The first split layer of the two-level reference trees, and the layer of their second split.
TWO_FIRST, TWO_DEEP = 1, 2
#: The best of the references: the planted tree.
TWO_BEST = f"two-level: digit|grating at {TWO_FIRST}, left|right at {TWO_DEEP}"


def _two_level_refs(space, bundle) -> dict[str, BranchingTree]:
    t, n, f, d = space.task_names, space.num_layers, TWO_FIRST, TWO_DEEP
    three = (TWO_LEFT, TWO_RIGHT, TWO_GRATINGS)
    return {
        "all-shared": BranchingTree.all_shared(t, n),
        f"digit|grating at {f}": BranchingTree.from_split_points(t, n, {f: (TWO_DIGITS, TWO_GRATINGS)}),
        TWO_BEST: BranchingTree.from_split_points(t, n, {f: (TWO_DIGITS, TWO_GRATINGS), d: three}),
        f"two-level, left|right at {d + 1}": BranchingTree.from_split_points(
            t, n, {f: (TWO_DIGITS, TWO_GRATINGS), d + 1: three}),
        f"left|right|grating at {f}": BranchingTree.from_split_points(t, n, {f: three}),
        f"left|right|grating at {d}": BranchingTree.from_split_points(t, n, {d: three}),
        f"wrong two-level: mixed at {d}": BranchingTree.from_split_points(
            t, n, {f: (TWO_DIGITS, TWO_GRATINGS), d: (*TWO_MIXED, TWO_GRATINGS)}),
    }


def _two_level_criterion(tree, space, bundle) -> tuple[bool, str]:
    """The first split is digit | grating (ARI 1), and at a deeper layer the digit tasks are split
    into left | right (ARI 1 over the digit tasks; the grating tasks may split or not)."""
    first = tree.first_split_layer
    score = ari(tree.first_split(), (TWO_DIGITS, TWO_GRATINGS), tree.tasks)
    deeper = [] if first is None else [
        layer for layer in range(first + 1, tree.num_layers)
        if ari(tree.groups_at(layer), (TWO_LEFT, TWO_RIGHT), TWO_DIGITS) == 1.0]
    where = f"left|right at layer {deeper[0]}" if deeper else "no left|right split deeper"
    return score == 1.0 and bool(deeper), f"ARI {score:.2f} at layer {first}, {where}"


#: A tree within this factor of the all-shared tree's parameters counts as the cheapest.
NULL_COST = 1.1


def _cheapest(tree, space, bundle) -> tuple[bool, str]:
    ratio = tree_cost(tree, space).params / tree_cost(BranchingTree.all_shared(tree.tasks, tree.num_layers), space).params
    return ratio <= NULL_COST, f"params x{ratio:.2f} of all-shared, first split at {tree.first_split_layer}"


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case("digit_gratings", "digit_gratings", "2 groups (digit | grating), split early",
             _dg_refs, (Claim("planted after layer 1", "wrong after layer 1", "beats"),
                        Claim("planted after layer 1", "all-shared", "beats")), _first_split_is_planted),
        Case("levels", "digit_grating_levels", "3 factors: digit (hard), grating, level (easy, but harms the digit tasks)",
             _levels_refs, (Claim("3 factors after layer 1", "wrong 3 groups after layer 1", "beats"),
                            Claim("3 factors after layer 1", "all-shared", "beats"),
                            Claim("digit | grating+level after 1", "3 factors after layer 1", "ties"),
                            Claim("3 factors after layer 1", "digit+level | grating after 1", "beats")),
             _hard_groups_separated),
        Case("synth_attributes", "synth_attributes",
             "40 tasks in 4 planted groups, each worth its own narrow last layers (split at layer 2)",
             _attr_refs, tuple(Claim(ATTR_BEST, worse, "beats")
                               for worse in ("all-shared", f"planted at {ATTR_LAYER - 1}", f"planted at {ATTR_LAYER + 1}",
                                             f"wrong at {ATTR_LAYER}", f"3 groups (0+1) at {ATTR_LAYER}",
                                             f"2 groups (0+1 | 2+3) at {ATTR_LAYER}", f"8 groups (halves) at {ATTR_LAYER}")),
             _first_split_is_planted, measure="score"),
        Case("depth", "multi_digits_depth", "left | right, sharing the early layers (split at 2 or 3)",
             _depth_refs, (Claim("left|right at layer 2", "left|right at layer 0", "ties"),
                           Claim("left|right at layer 2", "all-shared", "beats"),
                           Claim("left|right at layer 2", "wrong at layer 2", "beats")), _depth_criterion),
        Case("null", "synth_null", "6 tasks on the same content: the cheapest tree",
             _null_refs, (Claim("halves after layer 1", "all-shared", "ties"),
                          Claim("all-shared", "independent", "beats")), _cheapest),
        Case("kinds", "digit_grating_kinds", "tasks of four kinds, losses 1e5 apart: ink and phase alone",
             _kinds_refs, (Claim("best at layer 0", "planted at layer 0", "beats"),
                           Claim("best at layer 0", "by kind at layer 0", "beats"),
                           Claim("best at layer 0", "all-shared", "beats")), _kinds_criterion,
             measure="delta_m"),
        Case("two_level", "multi_digit_gratings",
             "digit | grating at layer 1, then the digit group left | right at layer 2",
             _two_level_refs, tuple(Claim(TWO_BEST, worse, "beats")
                                    for worse in ("all-shared", f"digit|grating at {TWO_FIRST}",
                                                  f"left|right|grating at {TWO_FIRST}", f"left|right|grating at {TWO_DEEP}",
                                                  f"wrong two-level: mixed at {TWO_DEEP}")),
             _two_level_criterion, measure="score"),
    )
}
