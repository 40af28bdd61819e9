"""Rungs: how early in its training a tree can be judged, measured on the pooled trees of each case.

A search that trains candidates in rungs (successive halving) compares them after part of their
schedule. Each tree of a case's pool (``benchmarks/_pool.py``) is trained for the search budget
(``SearchSpace.proxy_epochs``) on ``--seeds`` search seeds, its validation metrics kept after every
epoch. At each fraction of the schedule, the trees are scored as the search scores them (the mean
task term against the best value any tree reached at that epoch, less the trade-off's cost
penalty) and compared with their scores at the end of the same training:

* ``tau``: Kendall's tau of the early ranking with the final one;
* ``regret``: the final score of the tree best at the fraction, below the best final score.

Three rules for reading an early curve are compared (``--rules``):

* ``plain``: the metrics at the fraction, as they are;
* ``rising``: tasks still learning are not judged: a task whose best value over the trees rose by
  more than ``RISING`` of itself over the last fifth of the epochs seen is left out of every
  tree's term at that fraction;
* ``extrapolated``: each tree's curve of each task is extended to the end of the schedule by a
  saturating fit (``value(e) = a - b * e^-c``, least squares over the epochs seen), and the
  extended values are scored.

Grouped by the kind of candidate (``--kinds``): ``groupings`` (trees that split once, at any layer,
compared with each other and all-shared) and ``all`` (the whole pool). Curves are kept in
``--log`` (JSON lines) and read back on the next run.

    python -m benchmarks.rungs [--cases digit_gratings,levels] [--seeds 2] [--jobs 2] [--log FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import kendalltau

from benchmarks._cases import CASES
from benchmarks._pool import Pool, load_case
from mtnas.core import format_table
from mtnas.space import trade_off_score
from mtnas.tree import BranchingTree

FRACTIONS = (1 / 9, 1 / 5, 1 / 3, 1 / 2, 2 / 3)
RULES = ("plain", "rising", "extrapolated")
#: A task counts as still learning when its best value rose by more than this share of itself over
#: the last fifth of the epochs seen.
RISING = 0.02


def curves(case: str, trees: list[dict], seed: int) -> list[dict]:
    """Every tree trained for the search budget on ``seed``: its validation metrics after each epoch."""
    from mtnas.model import relative_cost
    from mtnas.train import proxy_space, train_tree

    torch.set_num_threads(1)
    space, bundle = load_case(case, seed)
    proxy = proxy_space(space)
    rows = []
    for data in trees:
        tree = BranchingTree.from_dict(data)
        seen: list[dict] = []
        result = train_tree(tree, proxy, bundle, device=torch.device("cpu"), seed=seed,
                            monitor=lambda epoch, val: seen.append(val))
        seen.append(result.val)
        rows.append({"case": case, "seed": seed, "tree": data, "cost": relative_cost(tree, space, space.search.cost_metric),
                     "curve": seen})
    return rows


def _fit(values: list[float], epochs: int) -> float:
    """The value at ``epochs`` of a saturating curve fitted to ``values`` (epochs 1..n); the last
    value when the fit fails or has too few points."""
    n = len(values)
    if n < 3 or n >= epochs:
        return values[-1]
    x, y = np.arange(1, n + 1, dtype=float), np.asarray(values, dtype=float)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # a flat curve: its covariance is not needed
            (a, b, c), _ = curve_fit(lambda e, a, b, c: a - b * np.exp(-c * e), x, y,
                                     p0=(y[-1], y[-1] - y[0] or 1e-3, 0.3), maxfev=2000)
    except (RuntimeError, ValueError):
        return values[-1]
    value = float(a - b * math.exp(-c * epochs))
    lo, hi = min(y.min(), y[-1]), max(y.max(), y[-1])
    span = hi - lo
    return float(np.clip(value, lo - span, hi + span)) if math.isfinite(value) else values[-1]


def scores_at(rows: list[dict], epoch: int, rule: str, space, gain: float) -> list[float]:
    """Each tree's trade-off score at ``epoch`` (1-based) under ``rule``."""
    from mtnas.search import references, task_terms

    total = len(rows[0]["curve"])
    if rule == "extrapolated":
        metrics = []
        for r in rows:
            m = {}
            for task, values in r["curve"][epoch - 1].items():
                m[task] = {k: _fit([c[task][k] for c in r["curve"][:epoch]], total) for k in values}
            metrics.append(m)
    else:
        metrics = [r["curve"][epoch - 1] for r in rows]
    refs = references(metrics, space)
    keep = set(space.task_names)
    if rule == "rising" and epoch < total:
        back = max(1, round(epoch / 5))
        if epoch > back:
            before = references([r["curve"][epoch - 1 - back] for r in rows], space)
            for task in space.tasks:
                rise = statistics.mean(abs(refs[task.name][m] - before[task.name][m]) / max(abs(refs[task.name][m]), 1e-12)
                                       for m in task.metrics)
                if rise > RISING:
                    keep.discard(task.name)
        if not keep:
            keep = set(space.task_names)
    out = []
    for r, m in zip(rows, metrics):
        terms = task_terms(m, refs, space)
        out.append(trade_off_score(statistics.mean(terms[t] for t in keep), r["cost"], gain))
    return out


def _kind(tree: BranchingTree) -> str:
    return "groupings" if tree.first_split() is None or tree.partitions[-1] == tree.first_split() else "deeper"


def report(rows: list[dict], cases: list[str], rules: list[str]) -> None:
    table = []
    for case in cases:
        space, _ = load_case(case, 0)
        gain = space.search.gain_per_cost
        for kind in ("groupings", "all"):
            for rule in rules:
                cells: dict[float, list[tuple[float, float]]] = {f: [] for f in FRACTIONS}
                for seed in sorted({r["seed"] for r in rows if r["case"] == case}):
                    mine = [r for r in rows if r["case"] == case and r["seed"] == seed
                            and (kind == "all" or _kind(BranchingTree.from_dict(r["tree"])) == "groupings")]
                    if len(mine) < 3:
                        continue
                    total = len(mine[0]["curve"])
                    final = scores_at(mine, total, "plain", space, gain)
                    for f in FRACTIONS:
                        epoch = max(1, round(f * total))
                        if epoch >= total:
                            continue
                        early = scores_at(mine, epoch, rule, space, gain)
                        tau = kendalltau(early, final).statistic
                        cells[f].append((tau, max(final) - final[int(np.argmax(early))]))
                table.append([case, kind, rule] + [
                    f"{statistics.mean(t for t, _ in c):+.2f} / {statistics.mean(r for _, r in c):.2f}" if c else "-"
                    for c in (cells[f] for f in FRACTIONS)])
    print("\nKendall tau of the early ranking with the final one / regret of the early choice (score points), "
          "mean over seeds")
    print(format_table(["case", "trees", "rule"] + [f"at {f:.2f}" for f in FRACTIONS], table))
    print("\nwhere the tree best at the end (or one within 0.5 points of it) ranks at each fraction, 'plain' rule, "
          "per seed: what a rung that keeps the top few would keep")
    ranks = []
    for case in cases:
        space, _ = load_case(case, 0)
        cells = []
        for f in FRACTIONS:
            found = []
            for seed in sorted({r["seed"] for r in rows if r["case"] == case}):
                mine = [r for r in rows if r["case"] == case and r["seed"] == seed]
                total = len(mine[0]["curve"])
                final = np.array(scores_at(mine, total, "plain", space, space.search.gain_per_cost))
                early = np.array(scores_at(mine, max(1, round(f * total)), "plain", space, space.search.gain_per_cost))
                order = list(np.argsort(-early))
                found.append(f"{min(order.index(i) for i in np.flatnonzero(final >= final.max() - 0.5)) + 1}/{len(mine)}")
            cells.append(", ".join(found))
        ranks.append([case] + cells)
    print(format_table(["case"] + [f"at {f:.2f}" for f in FRACTIONS], ranks))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="digit_gratings,levels,depth,null,kinds,two_level")
    parser.add_argument("--seeds", type=int, default=2, help="search seeds 0..N-1")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--log", type=Path, default=None, help="curves read back from and appended to this file")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    rules = [r for r in args.rules.split(",") if r]
    bad = [c for c in cases if c not in CASES] + [r for r in rules if r not in RULES]
    if bad:
        parser.error(f"unknown case(s) or rule(s) {', '.join(bad)}; cases: {', '.join(CASES)}; rules: {', '.join(RULES)}")
    rows = [json.loads(line) for line in args.log.read_text().splitlines()] if args.log and args.log.is_file() else []
    done = {(r["case"], r["seed"]) for r in rows}
    todo = [(c, s) for c in cases for s in range(args.seeds) if (c, s) not in done]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(curves, c, [t.to_dict() for t in Pool.load(c).trees.values()], s) for c, s in todo]
        for future in as_completed(futures):
            got = future.result()
            rows += got
            print(f"curves {got[0]['case']} seed {got[0]['seed']}: {len(got)} trees, {time.perf_counter() - start:.0f} s",
                  flush=True)
            if args.log is not None:
                with args.log.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in got)
    report([r for r in rows if r["case"] in cases and r["seed"] < args.seeds], cases, rules)


if __name__ == "__main__":
    main()
