"""A ground truth that does not rest on the planted story: every grouping of ``digit_gratings``, trained.

Every partition of the space's six tasks into at most 3 groups (1 + 31 + 90 = 122), each split at
one layer (``--layer``, default 1, the planted reference's), is trained with the space's own budget
on ``--seeds`` seeds (stacked: trees with the same number of groups share a wiring and train as one
model, ``mtnas.train.train_trees``) and ranked by validation delta-m, averaged over the seeds.
Then each method (``--methods``) searches the space (``--search-seeds``, each in a fresh cache so
it trains what it needs itself), its tree's first split is looked up among the 122, and its rank and
regret (the best tree's delta-m minus its own) are printed, by delta-m and by the score the trained
methods maximise (delta-m less ``search.gain_per_cost`` points per all-shared network of extra cost).

    python -m benchmarks.exhaustive [--seeds 2] [--layer 1] [--methods trained,pairs,affinity,dmtg]
                                    [--search-seeds 0,1,2,3,4] [--jobs 2] [--search-cache DIR]

Last line, for the first method (the default): ``exhaustive: rank R of 122, regret X.XX points``
(median rank and mean regret by delta-m over its searches).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch

from mtnas.core import format_table
from mtnas.search import all_partitions
from mtnas.tree import BranchingTree

SPACE = "digit_gratings"


def _space(seed: int):
    from mtnas.space import load_resolved, load_space

    return load_resolved(replace(load_space(SPACE), seed=seed))


def ground_truth(seeds: list[int], layer: int) -> dict[frozenset, dict]:
    """Every grouping's mean delta-m and relative cost over ``seeds``, by its set of groups."""
    from mtnas.search import Evidence

    torch.set_num_threads(1)
    space, _ = _space(seeds[0])
    tasks = space.task_names
    groupings = [g for k in (1, 2, 3) for g in all_partitions(tasks, k)]
    trees = [BranchingTree.all_shared(tasks, space.num_layers) if len(g) == 1
             else BranchingTree.from_split_points(tasks, space.num_layers, {layer: g}) for g in groupings]
    table: dict[frozenset, dict] = {}
    for seed in seeds:
        start = time.perf_counter()
        space, bundle = _space(seed)
        evidence = Evidence(space, bundle, seed=seed)
        for groups, e in zip(groupings, evidence.evaluate_all(trees)):
            row = table.setdefault(frozenset(map(frozenset, groups)), {"groups": groups, "delta_m": [], "cost": e.cost})
            row["delta_m"].append(e.delta_m)
        print(f"seed {seed}: {len(trees)} trees trained in {time.perf_counter() - start:.0f}s", flush=True)
    for row in table.values():
        row["mean"] = statistics.mean(row["delta_m"])
    return table


def search(method: str, seed: int, cache: str | None = None) -> tuple[str, int, BranchingTree, float]:
    """One search of the space with ``method`` in ``cache`` (default a fresh one): its tree and seconds."""
    from mtnas.search import search_tree

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["MTNAS_CACHE_DIR"] = cache or fresh
        space, bundle = _space(seed)
        start = time.perf_counter()
        result = search_tree(space, bundle, seed=seed, hparams=replace(space.search, method=method))
        return method, seed, result.tree, time.perf_counter() - start


def _ranks(table: dict[frozenset, dict], key) -> dict[frozenset, int]:
    order = sorted(table, key=lambda g: -key(table[g]))
    return {g: i + 1 for i, g in enumerate(order)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="training seeds of the ground truth")
    parser.add_argument("--layer", type=int, default=1, help="the layer every grouping splits at")
    parser.add_argument("--methods", default="trained,pairs,affinity,dmtg",
                        help="comma-separated search methods; the first is the one the last line counts")
    parser.add_argument("--search-seeds", default="0,1,2,3,4", help="comma-separated seeds of each method's searches")
    parser.add_argument("--jobs", type=int, default=2, help="searches run in parallel processes")
    parser.add_argument("--search-cache", default=None,
                        help="the searches' MTNAS_CACHE_DIR, e.g. the recovery suite's, to reuse the trees its "
                             "searches of the same seeds trained (default: a fresh one per search; its seconds "
                             "are then a search's whole cost)")
    args = parser.parse_args(argv)
    from mtnas.search import METHODS

    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        parser.error(f"unknown method(s) {', '.join(bad)}; valid: {', '.join(METHODS.names())}")
    space, _ = _space(0)
    if not 0 <= args.layer < space.num_layers:
        parser.error(f"--layer must be in 0..{space.num_layers - 1}, got {args.layer}")
    table = ground_truth(list(range(args.seeds)), args.layer)
    gain = space.search.gain_per_cost
    by_dm = _ranks(table, lambda r: r["mean"])
    by_score = _ranks(table, lambda r: r["mean"] - gain * (r["cost"] - 1))
    best_dm = max(r["mean"] for r in table.values())
    best_score = max(r["mean"] - gain * (r["cost"] - 1) for r in table.values())
    top = sorted(table.values(), key=lambda r: -r["mean"])[:8]
    print(format_table(["rank", "grouping", "delta-m %", "cost"],
                       [[by_dm[frozenset(map(frozenset, r["groups"]))], " / ".join(",".join(g) for g in r["groups"]),
                         round(r["mean"], 2), round(r["cost"], 2)] for r in top]))
    seeds = [int(s) for s in args.search_seeds.split(",") if s]
    jobs = [(m, s) for m in methods for s in seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        found = list(pool.map(search, *zip(*jobs), [args.search_cache] * len(jobs)))
    summary: dict[str, list[tuple[int, float]]] = {}
    for method, seed, tree, seconds in found:
        split = tree.first_split() or (tree.tasks,)
        key = frozenset(map(frozenset, split))
        if key not in table:
            print(f"{method} seed {seed}: {tree.describe()} ({seconds:.0f}s): more groups than the table holds")
            continue
        row = table[key]
        regret = best_dm - row["mean"]
        score_regret = best_score - (row["mean"] - gain * (row["cost"] - 1))
        summary.setdefault(method, []).append((by_dm[key], regret))
        print(f"{method:>9} seed {seed}: {tree.describe():60s} {seconds:5.0f}s  rank {by_dm[key]:3d} by delta-m "
              f"(regret {regret:.2f}), rank {by_score[key]:3d} by score (regret {score_regret:.2f})", flush=True)
    for method in methods:
        rows = summary.get(method, [])
        if rows:
            print(f"exhaustive [{method}]: median rank {statistics.median(r for r, _ in rows):g} of {len(table)}, "
                  f"mean regret {statistics.mean(g for _, g in rows):.2f} points")
    rows = summary.get(methods[0], [])
    if rows:
        print(f"exhaustive: rank {statistics.median(r for r, _ in rows):g} of {len(table)}, "
              f"regret {statistics.mean(g for _, g in rows):.2f} points")


if __name__ == "__main__":
    main()
