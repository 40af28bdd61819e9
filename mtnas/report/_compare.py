"""``mtnas compare RUN RUN [...]``: the fronts of several runs side by side, as a table and a picture.

For comparing strategies or settings on one space (e.g. ``--strategy sampled`` against the
default at an equal ``--timeout``). Each run contributes its searched front (the enqueued
references left out, as the picks do), its two reference trees, its trial count and wall time.
The delta-m of two runs are comparable only when their baselines are the same: runs of
different spaces, proxy budgets or seeds are compared all the same, with a note saying so.
Costs are FLOPs for every run (whatever cost objective each used). The data is computed first
(:func:`compare_data`) and drawn second (:func:`draw_compare`), so tests check the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from mtnas.core import MtnasError, format_table
from mtnas.report._study_plots import ParetoPoint, _dominates, pareto_plot_data
from mtnas.study import SearchRun, absolute_url, load_study

__all__ = ["CompareData", "CompareReport", "RunFront", "compare_data", "compare_runs", "draw_compare"]


class RunFront(NamedTuple):
    """One run of a comparison."""

    name: str
    strategy: str
    trials: int  # completed
    seconds: float | None  # from the first trial's start to the last one's end
    front: tuple[ParetoPoint, ...]  # its searched front, by FLOPs
    searched: tuple[ParetoPoint, ...]  # every completed searched trial
    references: dict[str, ParetoPoint]  # "all-shared" / "independent" -> its trial


class CompareData(NamedTuple):
    runs: tuple[RunFront, ...]
    notes: tuple[str, ...]  # why the figures may not compare like for like


def _run_front(ref: str) -> tuple[RunFront, dict[str, Any]]:
    run = SearchRun.open(ref)
    study = load_study(run)
    data = pareto_plot_data(study, cost="flops")
    searched = tuple(p for p in data.points if p.fixed is None)
    front = sorted((p for p in searched if not any(_dominates(q, p) for q in searched)), key=lambda p: (p.cost, p.trial))
    unique, seen = [], set()
    for p in front:
        if p.tree not in seen:
            seen.add(p.tree)
            unique.append(p)
    refs = {p.fixed: p for p in sorted(data.points, key=lambda p: -p.trial) if p.fixed}
    done = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete and t.datetime_start]
    seconds = ((max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
               if done else None)
    settings = study.user_attrs.get("mtnas") or {}
    return RunFront(run.name, str(settings.get("strategy", "?")), len(data.points), seconds, tuple(unique), searched,
                    refs), settings


def compare_data(refs: list[str]) -> CompareData:
    """The fronts of the runs ``refs`` (run folders or ``STORAGE_URL#STUDY``)."""
    if len(refs) < 2:
        raise MtnasError("compare needs two runs or more, e.g. 'mtnas compare runs/dg1 runs/dg2'")
    runs, settings = zip(*(_run_front(r) for r in refs))
    notes = []
    seen: dict[tuple[str, str], str] = {}
    for ref in refs:  # one study named twice (the same folder, or its folder and its URL) is compared with itself
        run = SearchRun.open(ref)
        key = (absolute_url(run.storage()), run.study_name)
        if key in seen:
            twice = f"{ref} is given twice" if seen[key] == ref else f"{ref} is the same run as {seen[key]}"
            notes.append(f"{twice}: it is compared with itself")
        seen.setdefault(key, ref)
    spaces = [s.get("space") for s in settings]
    if any(s != spaces[0] for s in spaces[1:]):
        names = ", ".join(f"{r.name}: {(s or {}).get('name', '?')}" for r, s in zip(runs, spaces))
        notes.append(f"the runs searched different spaces or budgets ({names}): their delta-m are against "
                     "different baselines")
    seeds = {s.get("seed") for s in settings}
    if len(seeds) > 1:
        notes.append(f"the runs have different seeds ({', '.join(str(s) for s in seeds)}): their baselines differ")
    for r in runs:
        if not r.front:
            notes.append(f"{r.name} has no completed searched trial")
    return CompareData(tuple(runs), tuple(notes))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _point(p: ParetoPoint | None) -> str:
    return "-" if p is None else f"#{p.trial} {p.delta_m:+.2f}% {p.cost:,.0f}"


def summary_rows(data: CompareData) -> list[list[Any]]:
    """The side-by-side table: one row per fact, one column per run."""
    runs = data.runs

    def row(label: str, value: Any) -> list[Any]:
        return [label, *[value(r) for r in runs]]

    best = {r.name: max(r.front, key=lambda p: (p.delta_m, -p.cost), default=None) for r in runs}
    cheap = {r.name: min(r.front, key=lambda p: (p.cost, -p.delta_m), default=None) for r in runs}
    return [
        row("strategy", lambda r: r.strategy),
        row("completed trials", lambda r: r.trials),
        row("wall time", lambda r: _duration(r.seconds)),
        row("searched front (trees)", lambda r: len(r.front)),
        row("best delta-m (#trial, %, FLOPs)", lambda r: _point(best[r.name])),
        row("cheapest searched", lambda r: _point(cheap[r.name])),
        row("all-shared", lambda r: _point(r.references.get("all-shared"))),
        row("independent", lambda r: _point(r.references.get("independent"))),
    ]


def front_rows(data: CompareData) -> list[list[Any]]:
    """Every searched front tree of every run: run, trial, delta-m, FLOPs, tree."""
    return [[r.name, p.trial, round(p.delta_m, 3), int(p.cost), p.tree] for r in data.runs for p in r.front]


_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def draw_compare(data: CompareData, path: str | Path) -> Path:
    """Each run's searched trials (faint), its searched front (a step line) and its references
    (square: all-shared, diamond: independent), one colour per run; FLOPs against delta-m."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10.5, 5.5), layout="constrained")
    for i, r in enumerate(data.runs):
        colour = _COLOURS[i % len(_COLOURS)]
        if r.searched:
            ax.scatter([p.cost for p in r.searched], [p.delta_m for p in r.searched], s=18, color=colour, alpha=0.3)
        if r.front:
            ax.step([p.cost for p in r.front], [p.delta_m for p in r.front], where="post", color=colour, linewidth=1.5,
                    label=f"{r.name} ({r.strategy}, {r.trials} trials)")
            ax.scatter([p.cost for p in r.front], [p.delta_m for p in r.front], s=45, color=colour, zorder=3)
        for name, marker in (("all-shared", "s"), ("independent", "D")):
            p = r.references.get(name)
            if p is not None:
                ax.scatter([p.cost], [p.delta_m], s=80, marker=marker, color=colour, edgecolor="black", zorder=4,
                           label=f"{r.name} {name}")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("FLOPs (lower is better)")
    ax.set_ylabel("delta-m, % (higher is better)")
    ax.grid(True, alpha=0.3)
    ax.set_title("Searched Pareto fronts: " + " vs ".join(r.name for r in data.runs))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot, never over a point
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class CompareReport(NamedTuple):
    data: CompareData
    picture: Path

    def render(self) -> str:
        names = [r.name for r in self.data.runs]
        lines = [format_table(["", *names], summary_rows(self.data)), "",
                 "searched fronts (delta-m val %, FLOPs):",
                 format_table(["run", "trial", "delta-m val %", "FLOPs", "tree"], front_rows(self.data))]
        lines += [f"note: {n}" for n in self.data.notes]
        lines.append(f"picture: {self.picture}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": [{"run": r.name, "strategy": r.strategy, "completed_trials": r.trials, "seconds": r.seconds,
                      "front": [p._asdict() for p in r.front],
                      "references": {k: p._asdict() for k, p in r.references.items()}} for r in self.data.runs],
            "notes": list(self.data.notes), "picture": str(self.picture),
        }


def compare_runs(refs: list[str], out: str | Path | None = None) -> CompareReport:
    """Compare the runs ``refs``; the picture goes to ``out`` (default ``compare-A-B.png`` here)."""
    data = compare_data(refs)
    target = Path(out) if out else Path(f"compare-{'-'.join(r.name for r in data.runs)}.png")
    if target.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise MtnasError(f"{target}: the picture must end in .png, .svg or .pdf")
    return CompareReport(data, draw_compare(data, target))
