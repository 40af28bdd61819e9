"""``mtnas report RUN``: one self-contained HTML page of a search run.

The page holds the run's settings and trial counts, the Pareto front, a picture of every Pareto
tree, the retrained trees when a tree of the run was retrained (``mtnas.report._retrained``), the
routing evolution of the best searched tree, Optuna's optimisation history and hyperparameter
importances, and the table of all trials. Images are PNGs embedded as base64
``data:`` URIs and the CSS is inline: the file can be mailed, archived or opened offline, and needs
no JavaScript.
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna

from mtnas.core import MtnasError, __version__, atomic_write_text
from mtnas.report._retrained import Retrained, find_retrained
from mtnas.report._study_plots import draw_history, draw_importances, draw_pareto, pareto_plot_data
from mtnas.study import SearchRun, fail_reason, load_study, trial_file, trial_tree
from mtnas.viz import (
    SearchCandidates,
    candidates_of,
    draw_candidates,
    draw_routing,
    draw_tree,
    routing_evolution,
    tree_title,
)

__all__ = ["write_report"]

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; background: #fafafa;
       margin: 0; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e4e4e4; }
p.sub, p.note, figcaption { color: #666; font-size: 0.92em; }
code, pre { font-family: "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.88em; }
pre { background: #f4f4f4; padding: 8px 10px; border-radius: 4px; overflow-x: auto; margin: 6px 0 0; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e8e8e8; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 160px; background: none; color: #555; font-weight: 600; }
tr.pareto td { background: #eef5fb; }
tr.failed td { color: #a33; }
img { max-width: 100%; height: auto; display: block; }
figure { margin: 12px 0 20px; }
.trees figure { border: 1px solid #e4e4e4; border-radius: 6px; padding: 10px; margin: 0 0 16px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.pair h2 { margin-top: 24px; }
th { white-space: nowrap; }
.badge { display: inline-block; font-size: 0.8em; padding: 0 6px; border-radius: 8px; background: #e0ecf7; }
.badge.pick { background: #fbe0cf; }
"""


# --- reading the run ---------------------------------------------------------------------------


def _wall_time(trials: list[optuna.trial.FrozenTrial]) -> float | None:
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


# --- HTML pieces -------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(path: Path | None, alt: str) -> str:
    """An ``<img>`` with the PNG at ``path`` embedded as a data URI ("" when there is none)."""
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _summary(run: SearchRun, info: dict, study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> str:
    storage = str(info.get("storage", "-"))
    moved = storage != run.storage()
    counts = Counter(t.state.name.lower() for t in trials)
    state_text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    rows = [
        ("space", info["space"].get("name") if isinstance(info.get("space"), dict) else info.get("space")),
        ("strategy", info.get("strategy")),
        ("objectives", ", ".join(info.get("objectives", [])) + "  (" +
         ", ".join(d.name.lower() for d in study.directions) + ")"),
        ("sampler", info.get("sampler")),
        ("seed", info.get("seed")),
        ("trials", f"{len(trials)} ({state_text}); target {info.get('trials')} completed"),
        ("wall time", _duration(_wall_time(trials))),
        ("started", info.get("started", "-")),
        ("storage", storage + (f"  (the folder was moved: read from {run.storage()})" if moved else "")),
        ("run folder", "(read from the storage)" if run.remote else run.root.resolve()),
        ("mtnas", info.get("mtnas_version")),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _trials_table(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], front: set[int],
                  pick: int | None) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("trial", "state", "tree", "delta-m %", "FLOPs", "params", "time", "note"))
    rows = []
    for t in trials:
        a = t.user_attrs
        notes = []
        if a.get("fixed_tree"):
            notes.append(f"enqueued {a['fixed_tree']}")
        if a.get("reused_from") is not None:
            notes.append(f"reused trial {a['reused_from']}")
        reason = fail_reason(study, t)
        if reason:
            notes.append(reason)
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        css = "pareto" if t.number in front else "failed" if t.state == optuna.trial.TrialState.FAIL else ""
        badge = ' <span class="badge">Pareto</span>' if t.number in front else ""
        badge += ' <span class="badge pick">export\'s pick</span>' if t.number == pick else ""
        rows.append(
            f'<tr class="{css}"><td class="num">{t.number}{badge}</td><td>{_e(t.state.name.lower())}</td>'
            f'<td><code>{_e(a.get("tree", "-"))}</code></td><td class="num">{_num(a.get("delta_m"), "+.2f")}</td>'
            f'<td class="num">{_num(a.get("flops"), ",")}</td><td class="num">{_num(a.get("params"), ",")}</td>'
            f'<td class="num">{_duration(seconds)}</td><td>{_e("; ".join(notes))}</td></tr>'
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# --- the page ----------------------------------------------------------------------------------


def _pick_sentence(pick: int | None) -> str:
    if pick is None:
        return "absent: no searched trial completed, so 'mtnas export' has no default pick"
    return (f"trial {pick}, the tree 'mtnas export' writes by default (--pick trade-off: the best delta-m less "
            "search.gain_per_cost points per all-shared network of extra cost)")


def _tree_figures(run: SearchRun, study: optuna.Study, front: list, tmp: Path, pick: int | None) -> str:
    figures = []
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for p in front:
        mark = f" ({p.fixed})" if p.fixed else " (export's pick)" if p.trial == pick else ""
        caption = f"trial {p.trial}{mark}: delta-m {p.delta_m:+.2f}%, FLOPs {p.flops:,}, params {p.params:,}"
        tree = trial_tree(study, by_number[p.trial])
        image = draw_tree(tree, tmp / f"tree{p.trial}.png",
                          title=tree_title(f"trial {p.trial}", params=p.params, flops=p.flops, delta_m=p.delta_m))
        figures.append(f"<figure>{_img(image, f'sharing tree of trial {p.trial}')}"
                       f"<figcaption>{_e(caption)}<pre>{_e(tree.render_text())}</pre></figcaption></figure>")
    return f'<div class="trees">{"".join(figures)}</div>'


def _recorded_trial(run: SearchRun, study: optuna.Study, points: tuple, name: str) -> tuple[Any, str]:
    """The trial whose file ``name`` (``routing.npz``, ``candidates.json``) the page shows: the best
    Pareto trial with one, else the best trial with one; and a sentence saying which it is."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}

    def recorded(number: int) -> bool:
        trial = by_number[number]
        return (run.trial_dir(number) / name).is_file() or name in trial.user_attrs.get("artifacts", {})

    kept = sorted((p for p in points if recorded(p.trial)), key=lambda p: (-p.delta_m, p.trial))
    what = "a recorded routing" if name == "routing.npz" else "recorded candidates"
    on_front = [p for p in kept if p.pareto]
    if on_front:
        return on_front[0], f"The best Pareto trial with {what}"
    if kept:
        return kept[0], f"No Pareto trial has {what}; this is the best trial that has"
    return None, ""


def _routing_section(run: SearchRun, study: optuna.Study, points: tuple, info: dict, tmp: Path) -> str:
    """How the best trial's search decided: the routing evolution of a supernet search, or what a
    trained search trained (its candidates); a note when no trial recorded either, or when the
    record is damaged (the rest of the page is unaffected)."""
    best, which = _recorded_trial(run, study, points, "routing.npz")
    if best is None:
        return _candidates_section(run, study, points, info, tmp)
    title = f"<h2>Routing evolution of trial {best.trial}</h2>"
    try:
        evolution = routing_evolution(trial_file(run, study, study.trials[best.trial], "routing.npz"))
    except MtnasError as exc:
        return f"{title}<p class='note'>{_e(exc)}</p>"
    return (f"{title}<p class='note'>{which}. Heatmaps: the probability of each parent per epoch (bold rows: the "
            "routes of the final tree); the dashed line marks the epoch from which the argmax tree no longer "
            "changes.</p>" + _img(draw_routing(evolution, tmp / "routing.png"), f"routing of trial {best.trial}"))


def _candidates_section(run: SearchRun, study: optuna.Study, points: tuple, info: dict, tmp: Path) -> str:
    best, which = _recorded_trial(run, study, points, "candidates.json")
    if best is None:
        return ("<h2>How the search decided</h2><p class='note'>No trial recorded a routing history or the trees "
                f"its search trained (strategy {_e(info.get('strategy'))}).</p>")
    title = f"<h2>What the search of trial {best.trial} trained</h2>"
    try:
        found = candidates_of(trial_file(run, study, study.trials[best.trial], "candidates.json"))
    except MtnasError as exc:
        return f"{title}<p class='note'>{_e(exc)}</p>"
    return (f"{title}<p class='note'>{which}. Every tree the search compared (each grouping split at every layer, "
            "and the all-shared tree), trained with two seeds, delta-m against cost, numbered as in the table below; "
            f"the ring is the tree chosen, the cheapest whose mean over the two trainings was within {found.noise:.2f} "
            "points (one training's noise) of the best score.</p>"
            + _img(draw_candidates(found, tmp / "candidates.png"), f"candidates of trial {best.trial}")
            + _candidates_table(found))


def _candidates_table(found: SearchCandidates) -> str:
    """The trees of a candidates picture, by the numbers it shows them with; the chosen one highlighted."""
    head = "".join(f"<th>{h}</th>" for h in ("#", "tree", "epochs", "delta-m %", "second seed", "cost"))
    rows = []
    for i, tree in enumerate(found.trees):
        chosen = i == found.chosen
        badge = ' <span class="badge">chosen</span>' if chosen else ""
        again = found.delta_m_again[i]
        rows.append(f'<tr class="{"pareto" if chosen else ""}"><td class="num">{i + 1}{badge}</td>'
                    f"<td><code>{_e(tree)}</code></td><td class='num'>{found.epochs[i]}</td>"
                    f"<td class='num'>{found.delta_m[i]:+.2f}</td>"
                    f"<td class='num'>{f'{again:+.2f}' if math.isfinite(again) else '-'}</td>"
                    f"<td class='num'>{found.cost[i]:.2f}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _retrained_section(results: list[Retrained]) -> str:
    """Each retrained tree of the run: full-budget test metrics against single-task networks of
    the same budget, delta-m, cost, and its training curves."""
    parts = ["<h2>Retrained</h2><p class='note'>Trees of this run trained from scratch at full budget "
             "(<code>mtnas retrain</code>); delta-m on the test split against single-task networks trained "
             "for as many epochs.</p>"]
    for r in results:
        f = r.final
        trials = ", ".join(str(n) for n in r.trials)
        dm = f.get("delta_m") or {}
        facts = [("tree", f.get("sharing")), ("trial", trials), ("epochs", f.get("epochs")),
                 ("delta-m test", _num(dm.get("test"), "+.2f") + " %"), ("delta-m val", _num(dm.get("val"), "+.2f") + " %"),
                 ("params", _num(f.get("params"), ",")), ("FLOPs", _num(f.get("flops"), ",")),
                 ("device", f"{f.get('device')} ({f.get('precision')}), {_duration(f.get('seconds'))}"),
                 ("folder", r.folder)]
        body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
        single = (f.get("single_task") or {}).get("test", {})
        rows = "".join(
            f"<tr><td>{_e(task)}</td><td>{_e(metric)}</td><td class='num'>{_num(value, '.4f')}</td>"
            f"<td class='num'>{_num(single.get(task, {}).get(metric), '.4f')}</td></tr>"
            for task, metrics in (f.get("test") or {}).items() for metric, value in metrics.items()
        )
        table = ("<table><thead><tr><th>task</th><th>metric</th><th>test</th><th>single-task test</th></tr></thead>"
                 f"<tbody>{rows}</tbody></table>")
        curves = _img(r.curves, f"retrain curves of trial {trials}")
        parts.append(f'<div class="pair"><div><table class="kv">{body}</table></div><div>{table}</div></div>{curves}')
    return "".join(parts)


class _FrontTrial:
    """A Pareto trial with the facts the page shows (params and FLOPs whatever the cost axis)."""

    def __init__(self, point: Any, attrs: dict) -> None:
        self.trial, self.fixed, self.delta_m = point.trial, point.fixed, point.delta_m
        self.flops, self.params = int(attrs.get("flops") or 0), int(attrs.get("params") or 0)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the run folder ``run_dir`` to ``out`` (default ``run_dir/report.html``)."""
    run = SearchRun.open(run_dir)
    if run.remote is None and not run.root.is_dir():
        raise MtnasError(f"{run.root}: no such run folder; 'mtnas search' creates one under runs/")
    study = load_study(run)
    info = {**(study.user_attrs.get("mtnas") or {}), **run.info()}
    trials = study.get_trials(deepcopy=False)
    data = pareto_plot_data(study)
    by_number = {t.number: t for t in trials}
    front = [_FrontTrial(p, by_number[p.trial].user_attrs) for p in sorted(data.front, key=lambda p: -p.delta_m)]
    name = run.name
    sections: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mtnas-report-") as tmpdir:
        tmp = Path(tmpdir)
        sections.append(f"<h2>Run</h2>{_summary(run, info, study, trials)}")
        if data.points:
            sections.append(
                "<h2>Pareto front</h2><p class='note'>delta-m (mean relative gain over single-task networks, "
                f"validation split) against {_e(data.cost_label)}; grey dots are dominated trials; the star is "
                f"{_pick_sentence(data.pick)}.</p>"
                + _img(draw_pareto(data, tmp / "pareto.png"), "Pareto front")
            )
            sections.append("<h2>Pareto trees</h2><p class='note'>Best delta-m first; boxes are shared blocks, "
                            "layers run left to right.</p>" + _tree_figures(run, study, front, tmp, data.pick))
        else:
            sections.append("<h2>Pareto front</h2><p class='note'>No completed trial yet.</p>")
        if run.remote is None:
            tree_trials: dict[str, list[int]] = {}
            for t in trials:
                if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("tree_key"):
                    tree_trials.setdefault(t.user_attrs["tree_key"], []).append(t.number)
            retrained = find_retrained(run.root, tree_trials)
            if retrained:
                sections.append(_retrained_section(retrained))
        sections.append(_routing_section(run, study, data.points, info, tmp))
        history = draw_history(study, tmp / "history.png")
        importances = draw_importances(study, tmp / "importances.png")
        sections.append(
            "<div class='pair'><div><h2>Optimisation history</h2>"
            + (_img(history, "optimisation history") if history is not None else "<p class='note'>No completed trial.</p>")
            + "</div><div><h2>Hyperparameter importances</h2>"
            + (_img(importances, "hyperparameter importances") if importances is not None else
               "<p class='note'>Not computable for this run: it needs at least two completed trials that sampled "
               "the same hyperparameters, with different delta-m.</p>")
            + "</div></div>"
        )
        front_numbers = {p.trial for p in data.points if p.pareto}
        sections.append("<h2>Trials</h2><p class='note'>Highlighted: Pareto trials.</p>"
                        + _trials_table(study, trials, front_numbers, data.pick))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>mtnas report: {_e(name)}</title><style>{CSS}</style></head>\n<body><main>"
        f"<h1>mtnas search run <code>{_e(name)}</code></h1>"
        f"<p class='sub'>Report written {_e(time.strftime('%Y-%m-%d %H:%M'))} by mtnas {_e(__version__)}.</p>\n"
        + "\n".join(f"<section>{s}</section>" for s in sections)
        + "\n</main></body></html>\n"
    )
    target = Path(out) if out is not None else run.root / "report.html"
    atomic_write_text(target, page)
    return target
