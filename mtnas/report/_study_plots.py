"""Plots of a whole study: the Pareto front of quality against cost, and Optuna's own history and
hyperparameter-importance plots (``optuna.visualization.matplotlib``) with delta-m as the target.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import optuna

from mtnas.core import MtnasError
from mtnas.study import QUALITY, choose_trial, cost_objective, objective_names, trial_label, trial_objectives

__all__ = ["ParetoPlotData", "ParetoPoint", "draw_history", "draw_importances", "draw_pareto", "front_label",
           "pareto_plot_data", "tree_label"]

#: longest label of a Pareto tree in the plot, in characters (its trial and marks included)
LABEL_CHARS = 66

#: cost objective -> axis label
COST_LABELS = {"flops": "FLOPs", "params": "parameters"}


class ParetoPoint(NamedTuple):
    """One completed trial on the quality/cost plane."""

    trial: int
    cost: float
    delta_m: float
    tree: str  # the tree in one line (``BranchingTree.describe``)
    fixed: str | None  # "all-shared" or "independent" for the enqueued baselines
    pareto: bool  # not dominated by any other trial (ties do not dominate)
    reused_from: int | None


class ParetoPlotData(NamedTuple):
    """What the Pareto plot shows.

    Attributes:
        points: every completed trial with a delta-m and a cost, by trial number.
        front: the Pareto trials, one per distinct tree (the lowest trial number), by cost: the
            step line runs through them.
        cost: the cost key (``flops`` or ``params``).
        cost_label: the cost axis label.
        tasks: the task names.
        pick: the trial ``mtnas export`` takes by default (its ``--pick trade-off``; None: no
            searched trial completed).
    """

    points: tuple[ParetoPoint, ...]
    front: tuple[ParetoPoint, ...]
    cost: str
    cost_label: str
    tasks: tuple[str, ...]
    pick: int | None = None

    @property
    def pick_point(self) -> ParetoPoint | None:
        return next((p for p in self.points if p.trial == self.pick), None)

    @property
    def labelled(self) -> tuple[ParetoPoint, ...]:
        """The points the plot labels: the front, and export's pick when its tree is not on it (the
        pick is chosen among the searched trees, which a reference may dominate)."""
        pick = self.pick_point
        off_front = pick is not None and pick.tree not in {p.tree for p in self.front}
        return self.front + ((pick,) if off_front else ())


def _cost_key(study: optuna.Study) -> str:
    return cost_objective(objective_names(study)) or "flops"


def _dominates(a: ParetoPoint, b: ParetoPoint) -> bool:
    return a.delta_m >= b.delta_m and a.cost <= b.cost and (a.delta_m > b.delta_m or a.cost < b.cost)


def pareto_plot_data(study: optuna.Study, *, cost: str | None = None) -> ParetoPlotData:
    """Delta-m (maximised) against ``cost`` (minimised; default: the study's cost objective) of
    every completed trial, with the non-dominated ones flagged."""
    cost = cost or _cost_key(study)
    raw = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        attrs = t.user_attrs
        if attrs.get("delta_m") is None or attrs.get(cost) is None:
            continue
        label = trial_label(study, t) or attrs.get("tree") or "?"  # the stored tree's; a study made by hand: its text
        raw.append(ParetoPoint(t.number, float(attrs[cost]), float(attrs["delta_m"]), label,
                               attrs.get("fixed_tree"), False, attrs.get("reused_from")))
    points = tuple(p._replace(pareto=not any(_dominates(q, p) for q in raw)) for p in raw)
    front, seen = [], set()
    for p in sorted(points, key=lambda p: (p.cost, -p.delta_m, p.trial)):
        if p.pareto and p.tree not in seen:
            seen.add(p.tree)
            front.append(p)
    space = study.user_attrs.get("mtnas", {}).get("space", {})
    tasks = tuple(t if isinstance(t, str) else t.get("name", "") for t in space.get("tasks", []))
    try:
        pick = choose_trial(study).number if any(p.fixed is None for p in points) else None
    except MtnasError:  # no searched front to pick from
        pick = None
    return ParetoPlotData(points, tuple(front), cost, COST_LABELS.get(cost, cost), tasks, pick)


def tree_label(tree: str, limit: int = LABEL_CHARS) -> str:
    """A ``describe()`` line as it is when it fits in ``limit`` characters; else each group named by
    its first task and how many more share it (``digit +2``), cut with an ellipsis past ``limit``.
    Task names stay whole: the reader matches them with the tree pictures and the trials table."""
    if len(tree) <= limit:
        return tree
    spans = []
    for span in tree.split(" | "):
        layers, _, groups = span.partition(": ")
        named = [g.split(",") for g in groups.split(" / ")]
        spans.append(f"{layers}: " + " / ".join(g[0] + (f" +{len(g) - 1}" if len(g) > 1 else "") for g in named))
    text = " | ".join(spans)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def front_label(point: ParetoPoint, pick: ParetoPoint | None = None) -> str:
    """The label of a Pareto tree in the plot: its trial, what it is (a reference; the tree
    ``mtnas export`` picks, which may be another trial of the same tree) and its tree (the
    report's tree pictures and trials table give the whole of a long one)."""
    marks = [point.fixed] if point.fixed else []
    if pick is not None and pick.tree == point.tree:
        marks.append("export's pick" + (f": trial {pick.trial}" if pick.trial != point.trial else ""))
    head = f"trial {point.trial}{' (' + '; '.join(marks) + ')' if marks else ''}: "
    return head + tree_label(point.tree, max(LABEL_CHARS - len(head), 20))


def _spread(wanted: list[float], gap: float, low: float, high: float) -> list[float]:
    """Positions near ``wanted`` (sorted ascending) at least ``gap`` apart, kept inside [low, high]."""
    out: list[float] = []
    for y in wanted:
        out.append(max(y, out[-1] + gap) if out else max(y, low))
    overflow = out[-1] - high if out else 0.0
    if overflow > 0:
        out = [y - overflow for y in out]
        for i in range(len(out) - 2, -1, -1):  # pushed down: keep the gap from the one above
            out[i] = min(out[i], out[i + 1] - gap)
    return out


def draw_pareto(data: ParetoPlotData, path: str | Path, *, title: str | None = None) -> Path:
    """Draw ``data``: every trial as a dot, the front as a step line with its trees labelled, the
    all-shared and independent baselines as distinct markers. The file type follows the suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(11, 5.5), layout="constrained")
    dominated = [p for p in data.points if p.fixed is None and not p.pareto]
    best = [p for p in data.points if p.fixed is None and p.pareto]
    if dominated:
        ax.scatter([p.cost for p in dominated], [p.delta_m for p in dominated], s=30, color="#BBBBBB",
                   edgecolor="#888888", label="dominated trial", zorder=2)
    if best:
        ax.scatter([p.cost for p in best], [p.delta_m for p in best], s=45, color="#0072B2", label="Pareto trial",
                   zorder=3)
    markers = {"all-shared": ("s", "#E69F00"), "independent": ("D", "#009E73")}
    for name, (marker, colour) in markers.items():
        fixed = [p for p in data.points if p.fixed == name]
        if fixed:
            ax.scatter([p.cost for p in fixed], [p.delta_m for p in fixed], s=90, marker=marker, color=colour,
                       edgecolor="black", label=name, zorder=4)
    if data.front:
        xs, ys = [p.cost for p in data.front], [p.delta_m for p in data.front]
        ax.step(xs, ys, where="post", color="#0072B2", linewidth=1.2, alpha=0.8, zorder=1, label="Pareto front")
    pick = data.pick_point
    if pick is not None:
        ax.scatter([pick.cost], [pick.delta_m], s=260, marker="*", color="#D55E00", edgecolor="black",
                   label="mtnas export's pick (trade-off)", zorder=5)
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel(f"{data.cost_label} (lower is better)")
    ax.set_ylabel("delta-m, % (higher is better)")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"Pareto front: {len(data.front)} trees of {len(data.points)} completed trials")
    if data.points:  # room on the right for the labels
        xs = [p.cost for p in data.points]
        ys = [p.delta_m for p in data.points]
        span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
        ax.set_xlim(min(xs) - 0.05 * span_x, max(xs) + 0.05 * span_x)
        ax.set_ylim(min(ys) - 0.08 * span_y, max(ys) + 0.08 * span_y)
    ax.legend(loc="lower right", fontsize=9)
    # labels in a column right of the plot, each joined to its point, ordered like the points
    fig.canvas.draw()
    to_axes = ax.transData + ax.transAxes.inverted()
    order = sorted(data.labelled, key=lambda p: p.delta_m)
    wanted = [to_axes.transform((p.cost, p.delta_m))[1] for p in order]
    gap = 0.075 if len(order) < 13 else 0.9 / len(order)
    for p, y in zip(order, _spread(wanted, gap, 0.02, 0.98)):
        ax.annotate(front_label(p, pick), xy=(p.cost, p.delta_m), xycoords="data", xytext=(1.02, y),
                    textcoords="axes fraction", fontsize=9, va="center", ha="left", annotation_clip=False,
                    fontweight="bold" if pick is not None and p.tree == pick.tree else "normal",
                    arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.7, "shrinkB": 4})
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _quality_of(study: optuna.Study) -> Callable[[optuna.trial.FrozenTrial], float]:
    """The target of Optuna's plots: each trial's delta-m, looked up by objective name."""
    return lambda trial: trial_objectives(study, trial)[QUALITY]


def _save_axes(ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = ax.figure
    fig.set_size_inches(6.5, 4.2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def draw_history(study: optuna.Study, path: str | Path) -> Path | None:
    """Optuna's optimisation history of delta-m; None without completed trials."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), matplotlib.rc_context():  # optuna switches the style to ggplot
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = ovm.plot_optimization_history(study, target=_quality_of(study), target_name="delta-m")
        return _save_axes(ax, path)


def _trials_with_params(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials that sampled the study's most common set of hyperparameters (the
    enqueued fixed trees sample none; define-by-run trials differ), for importances."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.params]
    if not done:
        return []
    keys = [frozenset(t.params) for t in done]
    common = max(set(keys), key=lambda k: (keys.count(k), len(k)))
    return [t for t in done if frozenset(t.params) == common]


def draw_importances(study: optuna.Study, path: str | Path) -> Path | None:
    """Optuna's hyperparameter importances (fANOVA) for delta-m, over the trials that sampled them.

    None when they cannot be computed: fewer than two such trials, or delta-m equal in all.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    trials = _trials_with_params(study)
    quality = _quality_of(study)
    if len(trials) < 2 or len({quality(t) for t in trials}) < 2:
        return None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "a new study created in memory" line
    try:
        sub = optuna.create_study(directions=study.directions)  # in memory: only the comparable trials
    finally:
        optuna.logging.set_verbosity(verbosity)
    sub.add_trials(trials)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), matplotlib.rc_context():  # optuna switches the style to ggplot
        warnings.simplefilter("ignore")
        try:
            # fANOVA splits the variance of delta-m whichever its direction (PED-ANOVA, optuna's
            # default, ranks the parameters behind *low* values)
            ax = ovm.plot_param_importances(sub, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                                            target=quality, target_name="delta-m")
        except (ValueError, RuntimeError, ZeroDivisionError):  # optuna cannot evaluate these trials
            plt.close("all")
            return None
        return _save_axes(ax, path)
