"""How the cost of one supernet epoch grows with the number of tasks, at a fixed K.

On the generated CelebA-shaped ``synth_attributes`` space (2,000 training images 16x16, 4 conv
layers, K = 4 copies per layer), one differentiable search of 2 warm-up and 2 routing epochs per
task count: 10, 20 and 40 attributes, each epoch timed inside the search. A warm-up epoch trains the shared path and measures the lookahead task affinity (one
extra backward pass per task, so it grows with T); a routing epoch alternates weight and routing
steps over sampled trees (whose block count is bounded by sum K_l, not by T). Printed: seconds
per warm-up epoch and per routing epoch, and their ratio to the 10-task figure.

    python -m benchmarks.task_scaling [--tasks 10,20,40] [--threads 2]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from mtnas.core import format_table
from mtnas.search import search_tree
from mtnas.space import load_resolved, load_space


def epoch_times(num_tasks: int) -> tuple[float, float]:
    """Mean seconds of a warm-up epoch and of a routing epoch (timed inside the search)."""
    base = load_space("synth_attributes")
    names = tuple(f"attr_{j:02d}" for j in range(num_tasks))
    space = replace(base, dataset=replace(base.dataset, args={**base.dataset.args, "attributes": num_tasks}),
                    tasks=tuple(t for t in base.tasks if t.name in names),
                    search=replace(base.search, epochs=4, warmup_epochs=2))
    space, bundle = load_resolved(space)
    seconds = search_tree(space, bundle, seed=0).routing["epoch_seconds"]
    return float(seconds[:2].mean()), float(seconds[2:].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="10,20,40")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, first = [], None
    for t in (int(x) for x in args.tasks.split(",")):
        warm, routing = epoch_times(t)
        first = first or (warm, routing)
        rows.append([t, warm, routing, warm / first[0], routing / first[1]])
    print(format_table(["tasks", "warm-up epoch s", "routing epoch s", "warm-up x", "routing x"], rows))
    print(f"synth_attributes, 2,000 training images, K = 4, {args.threads} threads")


if __name__ == "__main__":
    main()
