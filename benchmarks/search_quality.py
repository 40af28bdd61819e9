"""Search quality by space and strategy at an equal wall-clock budget: what do the Pareto fronts hold?

For each space, seed and strategy (``differentiable``, ``sampled``) one ``mtnas search`` runs with
``--timeout BUDGET`` (no new trial starts after it; the trial count is left open) in a temporary
runs folder. Both strategies start with the same two enqueued trees (all-shared, independent), so
what differs is what the rest of the budget finds. Per search it records the front's trees with
delta-m (validation, %, against single-task baselines at the proxy budget) and FLOPs, and prints
per space and strategy, averaged over seeds:

- ``trials``: completed trials within the budget;
- ``best dm``: the best delta-m of a front tree other than the two enqueued ones, and
  ``its FLOPs``: that tree's FLOPs as a fraction of independent's;
- ``beats both``: seeds where the front holds a tree with delta-m above both all-shared and
  independent at fewer FLOPs than independent;
- ``HV``: the hypervolume of the front in (FLOPs / independent's FLOPs, delta-m), bounded by
  FLOPs ratio 1 and the all-shared tree's delta-m: the area of trade-offs the front dominates.

    python -m benchmarks.search_quality [--spaces digit_gratings,multi_digits,synth_scenes]
        [--seeds 3] [--budget 150] [--jobs 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from mtnas.core import format_table
from mtnas.study import pareto, run_search

STRATEGIES = ("differentiable", "sampled")


@dataclass(frozen=True)
class FrontPoint:
    trial: int
    tree: str
    delta_m: float
    flops: int
    fixed: str | None


@dataclass(frozen=True)
class SearchOutcome:
    space: str
    strategy: str
    seed: int
    seconds: float
    trials: int
    front: tuple[FrontPoint, ...]
    all_shared: FrontPoint
    independent: FrontPoint


def hypervolume(points: list[tuple[float, float]], ref_cost: float, ref_quality: float) -> float:
    """Area dominated by (cost, quality) points (cost down, quality up are good) inside the reference box."""
    inside = sorted((c, q) for c, q in points if c <= ref_cost and q >= ref_quality)
    area, best = 0.0, ref_quality
    for i, (c, q) in enumerate(inside):  # sweep by cost: each point adds its strip of new quality
        best = max(best, q)
        right = inside[i + 1][0] if i + 1 < len(inside) else ref_cost
        area += (right - c) * (best - ref_quality)
    return area


def search(space: str, strategy: str, seed: int, budget: float) -> SearchOutcome:
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        _, study = run_search(space, name=f"{strategy}{seed}", seed=seed, strategy=strategy, runs_dir=runs,
                              trials=10_000, timeout=budget, progress=False, threads=1)  # not the cores: see search_recovery
        done = [t for t in study.trials if t.state.name == "COMPLETE"]

        def point(t) -> FrontPoint:
            a = t.user_attrs
            return FrontPoint(t.number, a["tree"], a["delta_m"], a["flops"], a.get("fixed_tree"))

        fixed = {t.user_attrs.get("fixed_tree"): point(t) for t in done if t.user_attrs.get("fixed_tree")}
        front = tuple(point(t) for t in pareto(study))
    return SearchOutcome(space, strategy, seed, time.perf_counter() - start, len(done), front,
                         fixed["all-shared"], fixed["independent"])


def summarise(outcomes: list[SearchOutcome]) -> list[list]:
    rows = []
    for space in dict.fromkeys(o.space for o in outcomes):
        for strategy in STRATEGIES:
            runs = [o for o in outcomes if o.space == space and o.strategy == strategy]
            if not runs:
                continue
            best, ratio, beats, hv = [], [], 0, []
            for o in runs:
                ind = o.independent
                found = [p for p in o.front if p.fixed is None]
                if found:
                    top = max(found, key=lambda p: p.delta_m)
                    best.append(top.delta_m)
                    ratio.append(top.flops / ind.flops)
                beats += any(p.delta_m > max(ind.delta_m, o.all_shared.delta_m) and p.flops < ind.flops for p in o.front)
                hv.append(hypervolume([(p.flops / ind.flops, p.delta_m) for p in o.front], 1.0, o.all_shared.delta_m))
            rows.append([
                space, strategy, len(runs), statistics.mean(o.trials for o in runs),
                statistics.mean(o.all_shared.delta_m for o in runs), statistics.mean(o.independent.delta_m for o in runs),
                statistics.mean(best) if best else float("nan"), statistics.mean(ratio) if ratio else float("nan"),
                f"{beats}/{len(runs)}", statistics.mean(hv), statistics.mean(o.seconds for o in runs),
            ])
    return rows


HEADERS = ["space", "strategy", "seeds", "trials", "all-shared dm", "independent dm", "best dm", "its FLOPs",
           "beats both", "HV", "seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", default="digit_gratings,multi_digits,synth_scenes")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=150.0,
                        help="seconds of trials per search (no new trial after it; the baselines come first)")
    parser.add_argument("--jobs", type=int, default=2, help="searches run in parallel processes, one thread each")
    args = parser.parse_args()
    jobs = [(space, strategy, seed, args.budget) for space in args.spaces.split(",")
            for seed in range(args.first_seed, args.first_seed + args.seeds) for strategy in STRATEGIES]
    start = time.perf_counter()
    outcomes = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for o in pool.map(search, *zip(*jobs)):  # printed as they come: a long run loses nothing
            front = "; ".join(f"#{p.trial} {p.delta_m:+.2f}% {p.flops / o.independent.flops:.2f}x" for p in o.front)
            print(f"{o.space} {o.strategy} seed {o.seed}: {o.trials} trials in {o.seconds:.0f}s; front: {front}",
                  flush=True)
            outcomes.append(o)
    print()
    print(format_table(HEADERS, summarise(outcomes)))
    print(f"\nbudget {args.budget:.0f}s per search, {args.jobs} searches in parallel (one thread each); "
          f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
