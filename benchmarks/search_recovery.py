"""Search quality of a default ``mtnas search digit_gratings``: is the planted tree on the front?

For each seed: one default search (the space's trial count and budgets) in a temporary runs
folder; a seed counts when some Pareto tree's first branching separates exactly the digit tasks
from the grating tasks (adjusted Rand index 1.0). Prints the wall time of each search; last line:
``search recovery: K/N seeds``.

    python benchmarks/search_recovery.py [--seeds 5] [--jobs 2] [--strategy differentiable]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from benchmarks.planted_recovery import first_split_ari
from mtnas.study import pareto, run_search
from mtnas.tree import BranchingTree

PLANTED = (("digit", "parity", "ge5"), ("orientation", "frequency", "diagonal"))


def run(seed: int, strategy: str) -> tuple[int, float, list[tuple[int, float, str]]]:
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        _, study = run_search("digit_gratings", name=f"s{seed}", seed=seed, strategy=strategy, runs_dir=runs, progress=False)
        front = []
        for trial in pareto(study):
            partitions = trial.user_attrs["partitions"]
            tasks = tuple(task for group in partitions[0] for task in group)
            tree = BranchingTree(tasks, partitions)
            front.append((trial.number, first_split_ari(tree, PLANTED), trial.user_attrs["tree"]))
    return seed, time.perf_counter() - start, front


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="searches run in parallel processes")
    parser.add_argument("--strategy", default="differentiable")
    args = parser.parse_args()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, range(args.seeds), [args.strategy] * args.seeds))
    hits = 0
    for seed, seconds, front in results:
        found = [n for n, ari, _ in front if ari == 1.0]
        hits += bool(found)
        print(f"seed {seed}: {seconds:5.0f}s  front trials {[n for n, _, _ in front]}  planted on front: {found or 'no'}")
    print(f"search recovery: {hits}/{args.seeds} seeds")


if __name__ == "__main__":
    main()
