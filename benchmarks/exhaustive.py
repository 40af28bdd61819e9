"""A ground truth that does not rest on a planted story: every grouping of a six-task space, trained.

Every partition of the space's tasks into at most 3 groups (1 + 31 + 90 = 122 for six tasks),
each split at one layer (``--layer``, default 1), is trained with the space's own budget on ``--seeds`` seeds and ranked by
validation delta-m, averaged over the seeds (the exhaustive trained ranking).

Then:

* **Cheap signals** (``--signals``): each scores every grouping from far less training, and its
  Kendall tau with the trained ranking is printed (``rank correlation [NAME]: tau X.XX``); the
  first line is one training against another (``one training``: seed 0's ranking against seed
  1's), the ceiling a signal measured once can reach. Signals: ``short3``/``short5`` (each
  grouping trained from scratch for 3 or 5 epochs, its own schedule), ``partial5`` (the first 5
  epochs of the whole schedule), ``warm`` (the all-shared network trained for a fifth of the
  budget, each grouping fine-tuned from it for a fifth), ``tag`` (TAG's total affinity, its
  lookahead affinity averaged over the whole all-shared training, every 10 steps: the ``tag``
  method), ``agreement`` (the per-sample gradient agreement within groups after a fifth of the
  budget: the ``trained`` method's proposals), ``pairs`` (the sum of trained pairs: Standley et
  al.'s estimate, 15 pair networks). Signals are measured at ``--signal-seed`` (default 2, apart
  from the truth's seeds).
* **Methods** (``--methods``): each searches the space (``--search-seeds``, each in a fresh
  evidence folder so it trains what it needs itself), its tree's first split is looked up among the
  groupings, and its rank and regret (the best grouping's value minus its own) are printed, by
  delta-m and by the score the trained methods maximise (delta-m less ``search.gain_per_cost``
  points per all-shared network of extra cost).

    python -m benchmarks.exhaustive [--space digit_gratings] [--layer 1] [--seeds 2]
        [--signals short3,short5,partial5,warm,tag,agreement,pairs] [--methods trained,pairs,tag]
        [--search-seeds 0,1,2,3,4] [--jobs 2]

Last line, for the first method (the default): ``exhaustive: rank R of 122, regret X.XX points
(by score: rank R, regret X.XX)``: median rank and mean regret over its searches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import torch
from scipy.stats import kendalltau

from mtnas.core import format_table
from mtnas.search import all_partitions
from mtnas.space import trade_off_score
from mtnas.tree import BranchingTree

SIGNALS = ("short3", "short5", "partial5", "warm", "tag", "agreement", "pairs")
CPU = torch.device("cpu")


def _space(name: str, seed: int):
    from mtnas.space import load_resolved, load_space

    return load_resolved(replace(load_space(name), seed=seed))


def _groupings(tasks: tuple[str, ...]) -> list[tuple[tuple[str, ...], ...]]:
    return [g for k in (1, 2, 3) for g in all_partitions(tasks, k)]


def _tree(tasks, layers: int, layer: int, groups) -> BranchingTree:
    return BranchingTree.all_shared(tasks, layers) if len(groups) == 1 else \
        BranchingTree.from_split_points(tasks, layers, {layer: groups})


def _key(groups) -> frozenset:
    return frozenset(map(frozenset, groups))


def truth_seed(name: str, layer: int, seed: int) -> tuple[int, dict[frozenset, float], dict[frozenset, float]]:
    """Every grouping trained with the space's budget on ``seed``: delta-m and relative cost by grouping."""
    from mtnas.search import Evidence, Unit

    torch.set_num_threads(1)
    space, bundle = _space(name, seed)
    tasks, layers = space.task_names, space.num_layers
    groupings = _groupings(tasks)
    evidence = Evidence(space, bundle)
    base = evidence.baselines(seed)
    units = [Unit(_tree(tasks, layers, layer, g), space.training.epochs, seed) for g in groupings]
    found = evidence.obtain(units)
    from mtnas.model import relative_cost

    dm = {_key(g): base.delta_m(f.result, space, "val") for g, f in zip(groupings, found)}
    cost = {_key(g): relative_cost(u.tree, space, "flops") for g, u in zip(groupings, units)}
    return seed, dm, cost


def signal_scores(name: str, layer: int, signal: str, seed: int) -> tuple[str, dict[frozenset, float], float]:
    """One cheap signal's score of every grouping (higher: better), and its seconds."""
    from mtnas.search import Evidence, Unit, gradient_agreement, labels_of, pair_model, relative_scores
    from mtnas.search._tag import tag_total, train_with_affinity
    from mtnas.train import train_trees

    torch.set_num_threads(1)
    space, bundle = _space(name, seed)
    tasks, layers, epochs = space.task_names, space.num_layers, space.training.epochs
    groupings = _groupings(tasks)
    trees = [_tree(tasks, layers, layer, g) for g in groupings]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["MTNAS_CACHE_DIR"] = fresh  # each signal trains what it needs
        evidence = Evidence(space, bundle)
        fifth = max(1, round(epochs / 5))
        if signal in ("short3", "short5", "partial5"):
            n = int(signal[-1])
            units = [Unit(t, epochs, seed, stop=n) if signal.startswith("partial") else Unit(t, n, seed) for t in trees]
            values = relative_scores([f.result.val for f in evidence.obtain(units)], space)
        elif signal == "warm":
            shared = trees[0]
            short = replace(space, training=replace(space.training, epochs=fifth))
            ((_, state),) = train_trees(short, bundle, [shared], device=CPU, seed=seed)
            results = train_trees(short, bundle, trees, device=CPU, seed=seed, start=(shared, state))
            values = relative_scores([r.val for r, _ in results], space)
        elif signal == "tag":
            _, z, _ = train_with_affinity(space, bundle, seed=seed)
            values = [tag_total(z, labels_of(tasks, g)) for g in groupings]
        elif signal == "agreement":
            a = evidence.extra(Unit(trees[0], fifth, seed), "agreement", gradient_agreement).copy()
            np.fill_diagonal(a, 0.0)
            values = [float((a * (labels_of(tasks, g)[:, None] == labels_of(tasks, g)[None, :])).sum())
                      for g in groupings]
        elif signal == "pairs":
            model = pair_model(evidence, seed, mode="sum")
            values = [model.estimate(g) for g in groupings]
        else:
            raise ValueError(f"unknown signal {signal!r}; valid: {', '.join(SIGNALS)}")
    return signal, {_key(g): float(v) for g, v in zip(groupings, values)}, time.perf_counter() - start


def search(name: str, method: str, seed: int) -> tuple[str, int, BranchingTree, float]:
    """One search of the space with ``method`` in a fresh evidence folder: its tree and seconds."""
    from mtnas.search import search_tree

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["MTNAS_CACHE_DIR"] = fresh
        space, bundle = _space(name, seed)
        start = time.perf_counter()
        result = search_tree(space, bundle, seed=seed, hparams=replace(space.search, method=method))
        return method, seed, result.tree, time.perf_counter() - start


def _ranks(values: dict[frozenset, float]) -> dict[frozenset, int]:
    return {g: i + 1 for i, g in enumerate(sorted(values, key=lambda g: -values[g]))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digit_gratings", help="a built-in space of up to 8 tasks")
    parser.add_argument("--layer", type=int, default=1, help="the layer every grouping splits at")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds of the ground truth")
    parser.add_argument("--signals", default=",".join(SIGNALS), help="comma-separated cheap signals ('' for none)")
    parser.add_argument("--signal-seed", type=int, default=2)
    parser.add_argument("--methods", default="trained,pairs,tag",
                        help="comma-separated search methods; the first is the one the last line counts")
    parser.add_argument("--search-seeds", default="0,1,2,3,4", help="comma-separated seeds of each method's searches")
    parser.add_argument("--jobs", type=int, default=2, help="processes run in parallel")
    args = parser.parse_args(argv)
    from mtnas.search import METHODS

    methods = [m for m in args.methods.split(",") if m]
    signals = [s for s in args.signals.split(",") if s]
    bad = [m for m in methods if m not in METHODS] + [s for s in signals if s not in SIGNALS]
    if bad:
        parser.error(f"unknown method(s) or signal(s) {', '.join(bad)}; methods: {', '.join(METHODS.names())}; "
                     f"signals: {', '.join(SIGNALS)}")
    space, _ = _space(args.space, 0)
    if len(space.tasks) > 8:
        parser.error(f"--space {args.space}: {len(space.tasks)} tasks; every grouping is trained, so at most 8")
    layer = args.layer
    if not 0 <= layer < space.num_layers:
        parser.error(f"--layer must be in 0..{space.num_layers - 1}, got {layer}")
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        truth = list(pool.map(truth_seed, [args.space] * args.seeds, [layer] * args.seeds, range(args.seeds)))
    print(f"ground truth: {len(truth[0][1])} groupings x {args.seeds} seeds, {time.perf_counter() - start:.0f}s",
          flush=True)
    cost = truth[0][2]
    mean = {g: statistics.mean(t[1][g] for t in truth) for g in cost}
    score = {g: trade_off_score(mean[g], cost[g], space.search.gain_per_cost) for g in cost}
    by_dm, by_score = _ranks(mean), _ranks(score)
    top = sorted(mean, key=lambda g: -mean[g])[:8]
    print(format_table(["rank", "score rank", "grouping", "delta-m %", "cost"],
                       [[by_dm[g], by_score[g], " / ".join(",".join(sorted(x, key=space.task_names.index)) for x in
                                                           sorted(g, key=lambda x: min(map(space.task_names.index, x)))),
                         round(mean[g], 2), round(cost[g], 2)] for g in top]))
    keys = list(mean)
    if args.seeds > 1:
        print(f"rank correlation [one training]: tau {kendalltau([truth[0][1][g] for g in keys], [truth[1][1][g] for g in keys]).statistic:.2f}")
    if signals:
        with ProcessPoolExecutor(args.jobs) as pool:
            for signal, values, seconds in pool.map(signal_scores, [args.space] * len(signals), [layer] * len(signals),
                                                    signals, [args.signal_seed] * len(signals)):
                tau = kendalltau([mean[g] for g in keys], [values[g] for g in keys]).statistic
                best = max(values, key=values.get)
                print(f"rank correlation [{signal}]: tau {tau:.2f}   ({seconds:.0f}s; its best grouping is rank "
                      f"{by_dm[best]} by delta-m)", flush=True)
    seeds = [int(s) for s in args.search_seeds.split(",") if s]
    jobs = [(m, s) for m in methods for s in seeds]
    summary: dict[str, list[tuple[int, float, int, float]]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        found = list(pool.map(search, [args.space] * len(jobs), *zip(*jobs))) if jobs else []
    best_dm, best_score = max(mean.values()), max(score.values())
    for method, seed, tree, seconds in found:
        key = _key(tree.first_split() or (tree.tasks,))
        if key not in mean:
            print(f"{method} seed {seed}: {tree.describe()} ({seconds:.0f}s): more groups than the table holds")
            continue
        row = (by_dm[key], best_dm - mean[key], by_score[key], best_score - score[key])
        summary.setdefault(method, []).append(row)
        print(f"{method:>9} seed {seed}: {tree.describe():60s} {seconds:5.0f}s  rank {row[0]:3d} by delta-m "
              f"(regret {row[1]:.2f}), rank {row[2]:3d} by score (regret {row[3]:.2f})", flush=True)
    for method in methods:
        rows = summary.get(method, [])
        if rows:
            print(f"exhaustive [{method}]: median rank {statistics.median(r[0] for r in rows):g} of {len(mean)}, "
                  f"mean regret {statistics.mean(r[1] for r in rows):.2f} points; by score: median rank "
                  f"{statistics.median(r[2] for r in rows):g}, mean regret {statistics.mean(r[3] for r in rows):.2f}")
    rows = summary.get(methods[0], []) if methods else []
    if rows:
        print(f"exhaustive: rank {statistics.median(r[0] for r in rows):g} of {len(mean)}, regret "
              f"{statistics.mean(r[1] for r in rows):.2f} points (by score: rank {statistics.median(r[2] for r in rows):g}, "
              f"regret {statistics.mean(r[3] for r in rows):.2f})")


if __name__ == "__main__":
    main()
