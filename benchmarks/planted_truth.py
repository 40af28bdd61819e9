"""Verify the planted ground truth of ``digit_gratings``: which trees really are better.

Trains, over several seeds, the all-shared tree, the planted digit | grating split after layer 1
and after layer 3, a wrong grouping of equal cost (each branch mixes both kinds), and independent
networks, with the built-in space's budget. Prints mean validation accuracy over the six tasks
(mean and spread over seeds) and params. The right split must beat the wrong one at equal cost.

    python benchmarks/planted_truth.py [--seeds 3] [--space digit_gratings] [--jobs 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch

from mtnas.core import format_table
from mtnas.space import load_resolved, load_space
from mtnas.train import mean_metric, train_tree
from mtnas.tree import BranchingTree

WRONG = (("digit", "parity", "orientation"), ("ge5", "frequency", "diagonal"))


def trees(space, planted) -> dict[str, BranchingTree]:
    t, n = space.task_names, space.num_layers
    return {
        "all-shared": BranchingTree.all_shared(t, n),
        "digit|grating after layer 1": BranchingTree.from_split_points(t, n, {1: planted}),
        "digit|grating after layer 3": BranchingTree.from_split_points(t, n, {3: planted}),
        "wrong grouping after layer 1": BranchingTree.from_split_points(t, n, {1: WRONG}),
        "independent": BranchingTree.independent(t, n),
    }


def run_seed(space_name: str, seed: int) -> dict[str, tuple[float, float, int]]:
    torch.set_num_threads(1)
    space, bundle = load_resolved(replace(load_space(space_name), seed=seed))
    out = {}
    for label, tree in trees(space, bundle.planted_groups).items():
        r = train_tree(tree, space, bundle, device=torch.device("cpu"), seed=seed)
        out[label] = (mean_metric(r.val), mean_metric(r.test), r.cost.params)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digit_gratings")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="seeds trained in parallel processes")
    args = parser.parse_args()
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        per_seed = list(pool.map(run_seed, [args.space] * args.seeds, range(args.seeds)))
    rows = []
    for label in per_seed[0]:
        val = [100 * s[label][0] for s in per_seed]
        test = [100 * s[label][1] for s in per_seed]
        spread = statistics.stdev(val) if len(val) > 1 else 0.0
        rows.append([label, round(statistics.mean(val), 2), round(spread, 2), round(statistics.mean(test), 2), per_seed[0][label][2]])
    print(f"{args.space}: mean accuracy over the tasks, {args.seeds} seeds")
    print(format_table(["tree", "val acc %", "+-", "test acc %", "params"], rows))
    by = {r[0]: r[1] for r in rows}
    right, wrong = by["digit|grating after layer 1"], by["wrong grouping after layer 1"]
    wins = sum(s["digit|grating after layer 1"][0] > s["wrong grouping after layer 1"][0] for s in per_seed)
    print(f"right split - wrong split (equal cost): {right - wrong:+.2f} points; right wins {wins}/{args.seeds} seeds")
    print(f"right split - all-shared: {right - by['all-shared']:+.2f} points")
    print(f"wall time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
