"""Retrain throughput per precision, with the data on the device and in pinned host memory.

Retrains the planted tree of ``digit_gratings`` with ``mtnas.train.retrain`` for a few epochs
in each configuration (fp32, bf16, bf16 + ``torch.compile``; ``--data device`` and ``host``) and
prints samples/s (the mean over the epochs after the first, which holds compilation and
warm-up) and the peak GPU memory. ``--dry-run`` does the same on the CPU at a tiny size, without
compile, so CI checks that the script runs.

    python -m benchmarks.gpu_retrain [--device cuda] [--epochs 4] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from mtnas.space import load_resolved, load_space
from mtnas.train import retrain
from mtnas.tree import Architecture, BranchingTree

PLANTED = (("digit", "parity", "ge5"), ("orientation", "frequency", "diagonal"))


def _arch(folder: Path, dry_run: bool) -> Path:
    space = load_space("digit_gratings")
    if dry_run:
        space = replace(space, dataset=replace(space.dataset, args={"n_train": 256, "n_val": 64, "n_test": 64}))
    space, _ = load_resolved(space)
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {0: PLANTED})
    return Architecture(tree, space.to_dict()).save(folder / "arch.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny data, one epoch, no compile")
    args = parser.parse_args()
    device, epochs = ("cpu", 1) if args.dry_run else (args.device, args.epochs)
    configs = [("fp32", False), ("bf16", False)] + ([] if args.dry_run else [("bf16", True)])
    print(f"retrain throughput on {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}), "
          f"{epochs} epochs, planted tree of digit_gratings")
    with tempfile.TemporaryDirectory() as tmp:
        arch = _arch(Path(tmp), args.dry_run)
        for data in ("device", "host"):
            for precision, compiled in configs:
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                out = Path(tmp) / f"{data}-{precision}-{compiled}"
                report = retrain(arch, out_dir=out, epochs=epochs, device=device, precision=precision,
                                 compile=compiled, data=data, progress=False)
                lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                steady = lines[1:] or lines
                speed = sum(line["samples_per_s"] for line in steady) / len(steady)
                peak = f"{torch.cuda.max_memory_allocated() / 2**20:8.1f} MiB" if device == "cuda" else "       -"
                label = precision + (" + compile" if compiled else "")
                print(f"  data {data:6}  {label:15}  {speed:12,.0f} samples/s   peak {peak}   "
                      f"delta-m test {report.delta_m('test'):+.2f}%")


if __name__ == "__main__":
    main()
