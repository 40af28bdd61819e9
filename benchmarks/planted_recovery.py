"""Planted-structure recovery of the differentiable search on ``digit_gratings``.

For each seed: one search with the space's search settings; the derived tree's first branching
is compared with the planted groups (digit tasks | grating tasks) by the adjusted Rand index.
A seed counts as recovered when ARI = 1.0. Last line: ``planted recovery: K/N seeds``.

    python benchmarks/planted_recovery.py [--seeds 5] [--method affinity] [--jobs 2] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch
import yaml
from sklearn.metrics import adjusted_rand_score

from mtnas.search import search_tree
from mtnas.space import load_resolved, load_space


def first_split_ari(tree, planted) -> float:
    split = tree.first_split()
    if split is None:
        return 0.0
    label = {t: i for i, g in enumerate(split) for t in g}
    truth = {t: i for i, g in enumerate(planted) for t in g}
    return adjusted_rand_score([truth[t] for t in tree.tasks], [label[t] for t in tree.tasks])


def run(space_name: str, seed: int, overrides: dict) -> tuple[int, str, float, float]:
    torch.set_num_threads(1)
    space, bundle = load_resolved(replace(load_space(space_name), seed=seed))
    cfg = replace(space.search, **overrides)
    start = time.perf_counter()
    result = search_tree(space, bundle, seed=seed, hparams=cfg)
    return seed, result.tree.describe(), first_split_ari(result.tree, bundle.planted_groups), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digit_gratings")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="searches run in parallel processes")
    parser.add_argument("--method", default=None, help="routing method (default: the space's)")
    parser.add_argument("--set", nargs="*", default=[], help="search settings, e.g. cost_weight=0.1")
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.method:
        overrides["method"] = args.method
    print(f"{args.space}: search settings {replace(load_space(args.space).search, **overrides)}")
    with ProcessPoolExecutor(args.jobs) as pool:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        results = list(pool.map(run, [args.space] * args.seeds, seeds, [overrides] * args.seeds))
    for seed, tree, ari, seconds in results:
        print(f"seed {seed}: ARI {ari:.2f}  {seconds:5.1f}s  {tree}")
    recovered = sum(ari == 1.0 for _, _, ari, _ in results)
    print(f"planted recovery: {recovered}/{args.seeds} seeds")


if __name__ == "__main__":
    main()
