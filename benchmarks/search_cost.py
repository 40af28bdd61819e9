"""The search's own cost, measured side by side in one run.

1. The single-task baselines (``compute_baselines`` at the proxy budget, no cache): one network at
   a time against the batched networks (a study trains them once, for delta-m; the ``trained``
   search does not need them).
2. With ``--study``, the default ``mtnas search`` (``search.trials`` trials), wall time from a cold
   cache: the baselines are part of it.
3. One search (``mtnas.search_tree``, the space's search settings, a fresh evidence folder: every
   unit it needs is trained) against the training of the tree it found at the space's budget
   (``mtnas.train_tree``: what ``mtnas retrain`` does, without the evaluation and files), and the
   same ratio counted in epochs times FLOPs relative to all-shared (what the search's units cost
   against the found tree's training, whatever the machine's overheads). With ``--methods``, one
   search per method (``search.method``), each against the training of its own tree.

The last line is ``search/retrain: X.XXx``, for the space's own method (or the first of ``--methods``).
Run it with nothing else on the machine.

    python -m benchmarks.search_cost [--space digit_gratings] [--seed 0] [--study] [--methods trained,tag]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import torch

from mtnas.model import relative_cost
from mtnas.search import METHODS, search_tree
from mtnas.space import load_resolved
from mtnas.study import proxy_space, run_search
from mtnas.train import compute_baselines, train_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digit_gratings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--study", action="store_true", help="also time the default mtnas search")
    parser.add_argument("--methods", default=None,
                        help="comma-separated search methods, one search each; the last line is the "
                             "first's (default: the space's own)")
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else None
    unknown = [m for m in methods or () if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; valid: {', '.join(METHODS.names())}")
    device = torch.device("cpu")
    space, bundle = load_resolved(args.space)
    print(f"{space.name}: {len(bundle.train)} training samples, {len(space.tasks)} tasks, "
          f"{torch.get_num_threads()} threads")

    with tempfile.TemporaryDirectory() as cache:
        os.environ["MTNAS_CACHE_DIR"] = cache  # cold: nothing cached from earlier runs
        proxy = proxy_space(space)
        timings = {}
        for batched in (False, True):
            start = time.perf_counter()
            compute_baselines(proxy, bundle, device=device, seed=args.seed, use_cache=False, batched=batched)
            timings[batched] = time.perf_counter() - start
        print(f"baselines at the proxy budget ({proxy.training.epochs} epochs, {len(space.tasks)} networks + "
              f"all-shared): one at a time {timings[False]:.1f} s, batched {timings[True]:.1f} s "
              f"({timings[False] / timings[True]:.2f}x)")

        if args.study:
            with tempfile.TemporaryDirectory() as runs:
                start = time.perf_counter()
                _, study = run_search(space, name="cost", runs_dir=runs, device="cpu", progress=False)
                done = sum(t.state.name == "COMPLETE" for t in study.trials)
                print(f"default mtnas search ({done} trials, cold cache): {time.perf_counter() - start:.1f} s wall")

    ratios = [one_search(space, bundle, method, args.seed, device) for method in methods or [space.search.method]]
    print(f"search/retrain: {ratios[0]:.2f}x")


def one_search(space, bundle, method: str, seed: int, device: torch.device) -> float:
    """Time one search with ``method`` from a cold evidence folder against training its tree; the ratio."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MTNAS_CACHE_DIR"] = cache  # cold: the search trains every unit it needs
        start = time.perf_counter()
        result = search_tree(space, bundle, seed=seed, hparams=replace(space.search, method=method))
        search_seconds = time.perf_counter() - start
    print(f"one search [{method}]: {search_seconds:.1f} s; found {result.tree.describe()}")
    trained = train_tree(result.tree, space, bundle, device=device, seed=seed)
    print(f"training the found tree at the space's budget ({space.training.epochs} epochs): {trained.seconds:.1f} s")
    if "unit_cost" in result.candidates:
        found = space.training.epochs * relative_cost(result.tree, space, "flops")
        units = result.candidates["unit_cost"][0]
        print(f"{int(result.candidates['units'][0])} units of training, {units:.0f} epochs x relative FLOPs, against "
              f"{found:.1f} for the found tree's training: {units / found:.2f}x")
    print(f"search/retrain [{method}]: {search_seconds / trained.seconds:.2f}x")
    return search_seconds / trained.seconds


if __name__ == "__main__":
    main()
