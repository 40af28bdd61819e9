"""Single-task baselines: one network at a time vs the T networks stacked under torch.vmap.

Both train the T single-task networks of delta-m with the space's budget (same seeds, batches and
schedule; ``mtnas.train.train_single_tasks``), side by side in one process, on ``digit_gratings``
(6 tasks) and ``synth_attributes`` (40 tasks). Prints each one's wall time (training and
evaluation), the speed-up, and the largest metric difference between the two (float summation
order only: expect 0 or about 1e-6).

    python benchmarks/baselines_speed.py [--n-train 2000] [--epochs 10] [--threads 2] [--device cpu]
    python benchmarks/baselines_speed.py --quick   # a tiny run that checks the script works
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from mtnas.data import DatasetBundle
from mtnas.space import SearchSpace, load_resolved
from mtnas.train import select_device, train_single_tasks


def shrink(space: SearchSpace, bundle: DatasetBundle, n_train: int | None, epochs: int | None) -> tuple[SearchSpace, DatasetBundle]:
    """The first ``n_train`` training samples and ``epochs`` epochs (None: as the space says)."""
    if n_train is not None:
        bundle = replace(bundle, train=bundle.train.select(slice(0, n_train)))
    if epochs is not None:
        space = replace(space, training=replace(space.training, epochs=epochs))
    return space, bundle


def largest_difference(a, b, split: str) -> float:
    return max(abs(getattr(a[t], split)[t][m] - getattr(b[t], split)[t][m]) for t in a for m in getattr(a[t], split)[t])


def measure(name: str, n_train: int | None, epochs: int | None, device: torch.device, seed: int) -> None:
    space, bundle = shrink(*load_resolved(name), n_train, epochs)
    timed = {}
    results = {}
    for batched in (False, True):
        start = time.perf_counter()
        results[batched] = train_single_tasks(space, bundle, device=device, seed=seed, batched=batched)
        timed[batched] = time.perf_counter() - start
    loop, stacked = timed[False], timed[True]
    diff = max(largest_difference(results[True], results[False], s) for s in ("val", "test"))
    print(f"{name}: T={len(space.tasks)}, {len(bundle.train)} training samples, {space.training.epochs} epochs, "
          f"batch {space.training.batch_size}, {device}")
    print(f"  one network at a time  {loop:8.2f} s")
    print(f"  stacked (torch.vmap)   {stacked:8.2f} s")
    print(f"  speed-up {loop / stacked:.2f}x   largest metric difference {diff:.2g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=None, help="training samples of synth_attributes (default: the space's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of synth_attributes (default: the space's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="64 samples, one epoch: checks that the script runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    small = 64 if args.quick else None
    one = 1 if args.quick else None
    measure("digit_gratings", small, one, device, args.seed)
    measure("synth_attributes", small or args.n_train, one or args.epochs, device, args.seed)


if __name__ == "__main__":
    main()
