"""Search quality of a default ``mtnas search``: is the planted tree on the front, and picked?

For each case of the planted-structure suite (``benchmarks/_cases.py``) and seed: one default
search (the space's trial count and budgets, the space's seed replaced) in a temporary runs
folder and a fresh cache; a seed counts as "on the front" when some Pareto tree meets the case's
recovery criterion, and as "picked" when the tree ``mtnas export`` picks by default does. Prints
the wall time of each search and the front; per case both counts; last line:
``search recovery: K/N cases at >= 4/5 on the front, P/N picked in >= 3/5``.

    python -m benchmarks.search_recovery [--cases digit_gratings,levels] [--seeds 5] [--jobs 2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from benchmarks._cases import CASES
from benchmarks.recovery_suite import _load
from mtnas.study import choose_trial, pareto, run_search
from mtnas.tree import BranchingTree


def _recovered(case_name: str, trial, space, bundle) -> bool:
    partitions = trial.user_attrs["partitions"]
    tasks = tuple(task for group in partitions[0] for task in group)
    return CASES[case_name].criterion(BranchingTree(tasks, partitions), space, bundle)[0]


def run(case_name: str, seed: int, strategy: str, cache: str | None = None
        ) -> tuple[str, int, float, list[tuple[int, bool, str]], tuple]:
    torch.set_num_threads(1)
    space, bundle = _load(case_name, seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        os.environ["MTNAS_CACHE_DIR"] = cache or os.path.join(runs, "cache")  # by default nothing trained before counts
        # one thread: run_search otherwise sets torch to the machine's cores, and two studies side
        # by side on two cores then wait on each other's threads (each training ~18x slower)
        _, study = run_search(space, name=f"s{seed}", seed=seed, strategy=strategy, runs_dir=runs, progress=False,
                              threads=1)
        front = [(t.number, _recovered(case_name, t, space, bundle), t.user_attrs["tree"]) for t in pareto(study)]
        chosen = choose_trial(study)
        picked = (chosen.number, _recovered(case_name, chosen, space, bundle), chosen.user_attrs["tree"])
    return case_name, seed, time.perf_counter() - start, front, picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="digit_gratings", help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="searches run in parallel processes")
    parser.add_argument("--strategy", default="differentiable")
    parser.add_argument("--cache", default=None,
                        help="the studies' MTNAS_CACHE_DIR, e.g. the recovery suite's, whose searches of the same "
                             "seeds trained the trees already (default: a fresh one; the seconds are then a study's "
                             "whole cost)")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)}; valid: {', '.join(CASES)}")
    jobs = [(c, s, args.strategy, args.cache) for c in cases for s in range(args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, *zip(*jobs)))
    passed = picked_ok = 0
    for case in cases:
        hits = picks = 0
        for name, seed, seconds, front, picked in results:
            if name != case:
                continue
            found = [n for n, ok, _ in front if ok]
            hits += bool(found)
            picks += picked[1]
            print(f"{case} seed {seed}: {seconds:5.0f}s  front {[(n, tree) for n, _, tree in front]}  "
                  f"planted on front: {found or 'no'}; picked: trial {picked[0]} {picked[2]} "
                  f"({'recovered' if picked[1] else 'not recovered'})")
        print(f"{case}: on the front {hits}/{args.seeds} seeds, picked {picks}/{args.seeds}")
        passed += hits >= 0.8 * args.seeds
        picked_ok += picks >= 0.6 * args.seeds
    print(f"search recovery: {passed}/{len(cases)} cases at >= 4/5 on the front, {picked_ok}/{len(cases)} picked in >= 3/5")


if __name__ == "__main__":
    main()
