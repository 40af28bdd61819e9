"""Search quality of a default ``mtnas search``: is the planted tree on the front?

For each case of the planted-structure suite (``benchmarks/_cases.py``) and seed: one default
search (the space's trial count and budgets, the space's seed replaced) in a temporary runs
folder; a seed counts when some Pareto tree meets the case's recovery criterion. Prints the wall
time of each search and the front; last line: ``search recovery: K/N cases at >= 4/5``.

    python -m benchmarks.search_recovery [--cases digit_gratings,levels] [--seeds 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from benchmarks._cases import CASES
from benchmarks.recovery_suite import _load
from mtnas.study import pareto, run_search
from mtnas.tree import BranchingTree


def run(case_name: str, seed: int, strategy: str) -> tuple[str, int, float, list[tuple[int, bool, str]]]:
    torch.set_num_threads(1)
    space, bundle = _load(case_name, seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        _, study = run_search(space, name=f"s{seed}", seed=seed, strategy=strategy, runs_dir=runs, progress=False)
        front = []
        for trial in pareto(study):
            partitions = trial.user_attrs["partitions"]
            tasks = tuple(task for group in partitions[0] for task in group)
            tree = BranchingTree(tasks, partitions)
            ok, _ = CASES[case_name].criterion(tree, space, bundle)
            front.append((trial.number, ok, trial.user_attrs["tree"]))
    return case_name, seed, time.perf_counter() - start, front


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="digit_gratings", help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="searches run in parallel processes")
    parser.add_argument("--strategy", default="differentiable")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)}; valid: {', '.join(CASES)}")
    jobs = [(c, s, args.strategy) for c in cases for s in range(args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, *zip(*jobs)))
    passed = 0
    for case in cases:
        hits = 0
        for name, seed, seconds, front in results:
            if name != case:
                continue
            found = [n for n, ok, _ in front if ok]
            hits += bool(found)
            print(f"{case} seed {seed}: {seconds:5.0f}s  front {[(n, tree) for n, _, tree in front]}  "
                  f"planted on front: {found or 'no'}")
        print(f"{case}: {hits}/{args.seeds} seeds")
        passed += hits >= 0.8 * args.seeds
    print(f"search recovery: {passed}/{len(cases)} cases at >= 4/5")


if __name__ == "__main__":
    main()
