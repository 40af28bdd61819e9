"""Regret: the score a user loses by taking the tree a search returns instead of the best tree.

For each case of the planted suite (``benchmarks/_cases.py``) and each method, 5 searches (seeds
0-4, the space's search settings with ``search.method`` set). Each found tree is looked up in the
case's pooled truth (``benchmarks/_pool.py``: the reference trees, every tree any method found,
the exhaustive ranking's top 10 where one exists, each trained at the space's budget on the truth
seeds and scored on test as the default search scores; a found tree that is not there joins it and
is trained). A search's **regret** is the best pool mean less the found tree's mean, in score
points (delta-m less ``search.gain_per_cost`` points per all-shared network of extra cost) and in
delta-m (the pool's best per task as reference). Per method and case the table prints the median
and maximum over the searches, the search's **cost** in trainings of the all-shared tree at the
search budget (``SearchSpace.proxy_epochs``), and whether it is **within noise**: the median at
most max(0.5, 1 SE of the best tree's mean) and the maximum at most max(1.0, 2 SE).

The cost is the method's ledger where it trains units of evidence (``SearchResult.spent``: each
unit's epochs times its cost relative to all-shared, whether trained or read from a cache), else
the search's wall time over one training of the all-shared tree at the search budget in the same
process (marked ``~``). Searches read and write this machine's evidence folder, so a re-run
trains nothing it trained before; the ledger does not depend on it.

    python -m benchmarks.regret [--methods trained,pairs,tag,dmtg,budget@3] [--cases a,b] [--seeds 5] [--jobs 2]
        [--log FILE] [--exhaustive] [--plot FILE]
    python -m benchmarks.regret --truth [--cases ...]       # the pooled truth alone
    python -m benchmarks.regret --table FILE | --tables standley [--methods ...]   # published trainings

A method ``NAME@B`` is ``NAME`` with ``search.budget`` B (the budgeted search's trainings). One line
per method, ``regret [METHOD]: K/N cases within noise, mean cost X.XXx``, the default (``trained``)
last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks._cases import CASES
from benchmarks._methods import method_settings, unknown_methods
from benchmarks._pool import TRUTH_SEEDS, Pool, TreeTruth, load_case, train_seed, truth
from mtnas.core import format_table
from mtnas.space import trade_off_score
from mtnas.tree import BranchingTree

DEFAULT_METHODS = ("trained", "pairs", "tag", "dmtg")
#: The default search method: its line is printed last.
DEFAULT = "trained"
#: The cases with an exhaustive trained ranking (``benchmarks.exhaustive``), by the layer its groupings split at.
EXHAUSTIVE = {"digit_gratings": 1, "kinds": 0}
TOP = 10


def search_one(case: str, method: str, seed: int) -> dict:
    """One search of ``case`` with ``method`` on ``seed``: its tree, seconds and cost."""
    from mtnas.search import search_tree
    from mtnas.train import proxy_space, train_tree

    torch.set_num_threads(1)
    space, bundle = load_case(case, seed)
    row = {"case": case, "method": method, "seed": seed}
    name, settings = method_settings(method)
    start = time.perf_counter()
    try:
        result = search_tree(space, bundle, seed=seed, hparams=replace(space.search, method=name, **settings))
    except Exception as exc:  # a method that cannot run on the case (e.g. pairs at 40 tasks): its reason
        return {**row, "error": str(exc).splitlines()[0]}
    seconds = time.perf_counter() - start
    if result.spent is not None:
        cost, kind = result.spent, "ledger"
    else:
        shared = BranchingTree.all_shared(space.task_names, space.num_layers)
        once = train_tree(shared, proxy_space(space), bundle, device=torch.device("cpu"), seed=seed).seconds
        cost, kind = seconds / once, "time"
    return {**row, "tree": result.tree.to_dict(), "describe": result.tree.describe(), "seconds": seconds,
            "cost": cost, "cost_kind": kind, "notes": list(getattr(result, "notes", ()))}


def exhaustive_top(case: str, layer: int, jobs: int, seeds: tuple[int, ...] = (0, 1)) -> list[BranchingTree]:
    """The exhaustive ranking's top ``TOP`` groupings by delta-m and by score (``benchmarks.exhaustive``,
    its truth seeds 0-1), as trees split at ``layer``."""
    from benchmarks.exhaustive import _groupings, _key, _tree, truth_seed

    space, _ = load_case(case, 0)
    with ProcessPoolExecutor(jobs) as pool:
        found = list(pool.map(truth_seed, [CASES[case].space] * len(seeds), [layer] * len(seeds), seeds))
    cost = found[0][2]
    dm = {g: statistics.mean(f[1][g] for f in found) for g in cost}
    score = {g: trade_off_score(dm[g], cost[g], space.search.gain_per_cost) for g in cost}
    keep = set(sorted(dm, key=dm.get, reverse=True)[:TOP]) | set(sorted(score, key=score.get, reverse=True)[:TOP])
    return [_tree(space.task_names, space.num_layers, layer, g) for g in _groupings(space.task_names) if _key(g) in keep]


def build_truths(pools: dict[str, Pool], jobs: int) -> dict[str, dict[str, TreeTruth]]:
    """Every pool trained on the truth seeds (only what the evidence folder lacks), and scored."""
    trained: dict[str, dict[int, dict]] = {c: {} for c in pools}
    costs: dict[str, dict[str, float]] = {c: {} for c in pools}
    tasks = [(c, [t.to_dict() for t in p.trees.values()], s) for c, p in pools.items() for s in TRUTH_SEEDS]
    start = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        for future in as_completed([pool.submit(train_seed, *t) for t in tasks]):
            case, seed, results, cost, seconds = future.result()
            trained[case][seed] = results
            costs[case].update(cost)
            print(f"truth {case} seed {seed}: {len(results)} trees ({seconds:.0f} s of training)", flush=True)
    print(f"truth: {sum(len(p.trees) for p in pools.values())} trees x {len(TRUTH_SEEDS)} seeds, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return {c: truth(pools[c], trained[c], costs[c]) for c in pools}


def print_truth(case: str, found: dict[str, TreeTruth], pool: Pool, top: int = 8) -> None:
    ranked = sorted(found.values(), key=lambda t: -t.score)
    print(f"\n{case}: pool of {len(ranked)} trees, {len(TRUTH_SEEDS)} seeds (score on test)")
    print(format_table(["tree", "score", "+- SE", "delta-m", "cost", "from"],
                       [[t.tree.describe(), round(t.score, 2), round(t.score_se, 2), round(t.delta_m, 2),
                         round(t.cost, 2), _short(pool.sources[t.tree.key])] for t in ranked[:top]]))


def _short(sources: list[str]) -> str:
    refs = [s.removeprefix("reference: ") for s in sources if s.startswith("reference: ")]
    found = sorted({s.split()[1] for s in sources if s.startswith("found: ")})
    parts = refs[:1] + ([f"found by {','.join(found)}"] if found else []) + (
        ["exhaustive"] if any(s.startswith("exhaustive") for s in sources) else [])
    return "; ".join(parts)


def regrets(rows: list[dict], truths: dict[str, dict[str, TreeTruth]], methods: list[str], cases: list[str]) -> list[dict]:
    """Per method and case: the median and maximum regret (score and delta-m), cost, within noise."""
    out = []
    for case in cases:
        found = truths[case]
        best = max(found.values(), key=lambda t: t.score)
        best_dm = max(t.delta_m for t in found.values())
        for method in methods:
            mine = [r for r in rows if r["case"] == case and r["method"] == method]
            done = [r for r in mine if "tree" in r]
            if not done:
                out.append({"case": case, "method": method, "error": mine[0]["error"] if mine else "not run"})
                continue
            trees = [BranchingTree.from_dict(r["tree"]) for r in done]
            score = [best.score - found[t.key].score for t in trees]
            dm = [best_dm - found[t.key].delta_m for t in trees]
            median, worst = statistics.median(score), max(score)
            within = median <= max(0.5, best.score_se) and worst <= max(1.0, 2 * best.score_se)
            out.append({"case": case, "method": method, "median": median, "max": worst,
                        "median_dm": statistics.median(dm), "max_dm": max(dm), "se": best.score_se,
                        "cost": statistics.mean(r["cost"] for r in done),
                        "timed": any(r["cost_kind"] == "time" for r in done), "within": within, "n": len(done),
                        "notes": [list(r.get("notes", ())) for r in done]})
    return out


def print_report(table: list[dict], methods: list[str]) -> None:
    body = []
    for r in table:
        if "error" in r:
            body.append([r["case"], r["method"], "-", "-", "-", "-", "-", "-", f"not run: {r['error'][:60]}"])
            continue
        body.append([r["case"], r["method"], f"{r['median']:.2f}", f"{r['max']:.2f}", f"{r['median_dm']:.2f}",
                     f"{r['max_dm']:.2f}", f"{'~' if r['timed'] else ''}{r['cost']:.2f}x", f"{r['se']:.2f}",
                     "yes" if r["within"] else "no"])
    print("\nregret of the found tree against the pool's best (points of score; of delta-m), over the searches")
    print(format_table(["case", "method", "median", "max", "median dm", "max dm", "cost", "best SE", "within noise"],
                       body))
    for method in methods:  # each kind of note (its text up to the first colon) once, with how often it came
        searches = [notes for r in table if r["method"] == method for notes in r.get("notes", ())]
        heads = Counter(head for notes in searches for head in {n.split(":")[0] for n in notes})
        for head, count in heads.items():
            print(f"note [{method}]: {head} ({count} of {len(searches)} searches)")
    for method in sorted(methods, key=lambda m: m == DEFAULT):
        mine = [r for r in table if r["method"] == method and "error" not in r]
        if mine:
            k = sum(r["within"] for r in mine)
            print(f"regret [{method}]: {k}/{len(mine)} cases within noise, mean cost "
                  f"{statistics.mean(r['cost'] for r in mine):.2f}x")


def plot(table: list[dict], path: Path) -> None:
    """Median regret (score points) against cost, one point per method and case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "osD^vP*X"
    methods = list(dict.fromkeys(r["method"] for r in table))
    for i, method in enumerate(methods):
        mine = [r for r in table if r["method"] == method and "error" not in r]
        ax.scatter([r["cost"] for r in mine], [r["median"] for r in mine], marker=markers[i % len(markers)],
                   s=50, label=method)
        for r in mine:
            ax.annotate(r["case"], (r["cost"], r["median"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    _axes(ax, [r["cost"] for r in table if "error" not in r], [r["median"] for r in table if "error" not in r])
    ax.set_xlabel("search cost (trainings of the all-shared tree at the search budget)")
    ax.set_ylabel("median regret (score points, symlog)")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_title("Regret against cost, per method and case")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _axes(ax, costs: list[float], regrets: list[float]) -> None:
    """Cost on a log axis, regret on a symlog one (linear within a point of 0, logarithmic beyond: one
    outlier hides nothing), both ticked with plain numbers."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    for axis, ticks in ((ax.xaxis, [1, 2, 3, 5, 10, 20, 50, 100]), (ax.yaxis, [0, 0.5, 1, 2, 5, 10, 20, 50, 100, 200])):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_locator(NullLocator())
    ax.set_xlim(min(costs, default=1.0) / 1.3, max(costs, default=10.0) * 1.3)
    ax.set_ylim(-0.2, max([1.0, *regrets]) * 1.5)


def curve(table: list[dict], path: Path) -> None:
    """Regret against budget: per method, the median over cases of each case's median regret (one
    point), and for a method run at several budgets (``NAME@B``) its points joined in budget order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, list[tuple[float, float, str]]] = {}
    for method in dict.fromkeys(r["method"] for r in table):
        mine = [r for r in table if r["method"] == method and "error" not in r]
        if mine:
            name = method.partition("@")[0]
            points.setdefault(name, []).append((statistics.mean(r["cost"] for r in mine),
                                                statistics.median(r["median"] for r in mine), method))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in points.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        for x, y, label in pts:
            ax.annotate(label.partition("@")[2] and f"@{label.partition('@')[2]}", (x, y), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    _axes(ax, [p[0] for pts in points.values() for p in pts], [p[1] for pts in points.values() for p in pts])
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("search cost (trainings of the all-shared tree at the search budget), mean over cases")
    ax.set_ylabel("median regret, median over cases (score points)")
    ax.set_title("Regret against budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a.startswith(("--table", "--tables")) for a in argv):
        from benchmarks._tables import main as tables_main

        return tables_main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="comma-separated search methods; NAME@B sets search.budget to B (budget@3); :-P leaves "
                             "proposer P out, :+P adds it last (budget@3:-depth)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--seeds", type=int, default=5, help="searches per method and case (seeds 0..N-1)")
    parser.add_argument("--jobs", type=int, default=2, help="searches (or truth seeds) run in parallel processes")
    parser.add_argument("--log", type=Path, default=None,
                        help="searches already in this JSON-lines file are read back, not run; new ones are appended")
    parser.add_argument("--exhaustive", action="store_true",
                        help=f"add the exhaustive ranking's top {TOP} to the pools of {', '.join(EXHAUSTIVE)}")
    parser.add_argument("--truth", action="store_true", help="print the pooled truth only (no searches)")
    parser.add_argument("--plot", type=Path, default=None, help="write regret against cost as a PNG")
    parser.add_argument("--curve", type=Path, default=None,
                        help="write regret against budget (each method's cases averaged) as a PNG")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    methods = [m for m in args.methods.split(",") if m]
    from mtnas.search import METHODS

    bad = [c for c in cases if c not in CASES] + unknown_methods(methods)
    if bad:
        parser.error(f"unknown case(s) or method(s) {', '.join(bad)}; cases: {', '.join(CASES)}; "
                     f"methods: {', '.join(METHODS.names())}")
    start = time.perf_counter()
    pools = {c: Pool.load(c) for c in cases}
    if args.exhaustive:
        for case in [c for c in cases if c in EXHAUSTIVE]:
            for tree in exhaustive_top(case, EXHAUSTIVE[case], args.jobs):
                pools[case].add(tree, f"exhaustive top {TOP} at layer {EXHAUSTIVE[case]}")
    logged = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()] \
        if args.log is not None and args.log.is_file() else []
    rows = list({(r["case"], r["method"], r["seed"]): r for r in logged
                 if r["case"] in cases and r["method"] in methods and r["seed"] < args.seeds}.values())
    if not args.truth:
        done = {(r["case"], r["method"], r["seed"]) for r in rows}
        todo = [(c, m, s) for c in cases for m in methods for s in range(args.seeds) if (c, m, s) not in done]
        rows += run_searches(todo, args.jobs, args.log)
    for r in rows:
        if "tree" in r:
            pools[r["case"]].add(BranchingTree.from_dict(r["tree"]), f"found: {r['method']} seed {r['seed']}")
    for pool in pools.values():
        pool.save()
    truths = build_truths(pools, args.jobs)
    for case in cases:
        print_truth(case, truths[case], pools[case])
    if args.truth:
        return
    table = regrets(rows, truths, methods, cases)
    print_report(table, methods)
    if args.plot:
        plot(table, args.plot)
        print(f"plot: {args.plot}")
    if args.curve:
        curve(table, args.curve)
        print(f"curve: {args.curve}")
    print(f"wall time {time.perf_counter() - start:.0f} s")


def run_searches(todo: list[tuple[str, str, int]], jobs: int, log: Path | None) -> list[dict]:
    """Each (case, method, seed) searched, in parallel processes; each row appended to ``log`` as it ends."""
    rows = []
    if not todo:
        return rows
    with ProcessPoolExecutor(jobs) as pool:
        futures = [pool.submit(search_one, *job) for job in todo]
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            what = row.get("describe") or f"not run: {row.get('error')}"
            cost = f"{row['cost']:.2f}x ({row['cost_kind']}) {row['seconds']:.0f}s" if "cost" in row else ""
            print(f"{row['case']:>16} {row['method']:>8} seed {row['seed']}: {cost}  {what}", flush=True)
            if log is not None:
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    return rows


if __name__ == "__main__":
    main()
