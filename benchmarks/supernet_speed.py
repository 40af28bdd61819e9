"""Supernet speed, measured side by side in one process.

Training-step time (forward + backward + optimizer step, one batch) of
  (a) mtnas's supernet: one sampled tree, every reached node computed once;
  (b) a per-task-path supernet (BMTAS, LibMTL's LTB): each task runs its own sampled path through
      the same shared copies, so a layer costs T block calls;
  (c) the all-shared network (one block per layer);
on ``digit_gratings`` (6 tasks) and a 40-task variant. Prints (b)/(a) (goal >= 0.8 * T/K) and
(a)/(c) (goal <= 1.15 * K). Then the expected-cost evaluation time for 40 tasks, K = 8, 16 layers.

    python benchmarks/supernet_speed.py [--steps 30] [--batch 64] [--device cuda]

On CUDA each timing synchronises the device, and the peak memory of each variant is printed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from mtnas.data import DatasetBundle, TaskData, TaskInfo
from mtnas.model import BranchedNet
from mtnas.search import Routing, Supernet
from mtnas.space import TaskConfig, load_resolved
from mtnas.train import task_losses
from mtnas.tree import BranchingTree


def forty_tasks(bundle: DatasetBundle) -> tuple[DatasetBundle, tuple[str, ...]]:
    """40 binary tasks on digit_gratings images: random splits of the digit and grating labels."""
    g = torch.Generator().manual_seed(0)
    label = {s: getattr(bundle, s).targets["digit"] * 8 + getattr(bundle, s).targets["orientation"] * 2
             + getattr(bundle, s).targets["frequency"] for s in ("train", "val", "test")}
    masks = torch.rand(40, 80, generator=g) > 0.5  # task i: is the joint label in a random half
    names = tuple(f"task{i:02d}" for i in range(40))

    def split(s: str) -> TaskData:
        x = getattr(bundle, s).inputs
        return TaskData(x, {n: masks[i][label[s]].long() for i, n in enumerate(names)})

    tasks = tuple(TaskInfo(n, "classification", 2) for n in names)
    return DatasetBundle(split("train"), split("val"), split("test"), tasks), names


def per_task_path_forward(net: Supernet, x: torch.Tensor, paths: list[list[int]]) -> dict[str, torch.Tensor]:
    """Each task computes its own path (no reuse across tasks): T block calls per layer."""
    out = {}
    for (task, head), path in zip(net.heads.items(), paths):
        h = x
        for layer, k in enumerate(path):
            h = net.layers[layer][k](h)
        out[task] = head(h)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, steps: int, device: torch.device) -> tuple[float, float]:
    """Seconds per step, and the peak memory of the steps in MiB (CUDA; 0 elsewhere)."""
    for _ in range(3):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return seconds, peak


def measure(space, bundle, steps: int, batch: int, device: torch.device = torch.device("cpu")) -> None:
    torch.manual_seed(0)
    x = bundle.train.inputs[:batch].to(device)
    targets = {k: v[:batch].to(device) for k, v in bundle.train.targets.items()}
    net = Supernet.from_space(space).to(device)
    shared = BranchedNet.from_space(BranchingTree.all_shared(space.task_names, space.num_layers), space).to(device)
    opt_net = torch.optim.Adam(net.weight_parameters(), 1e-3)
    opt_shared = torch.optim.Adam(shared.parameters(), 1e-3)
    blocks = {"a": 0, "b": 0}

    def step_a() -> None:
        sample = net.routing.sample(1.0, frozen=True)
        blocks["a"] = sum(len(u) for u in sample.used)
        loss = sum(task_losses(net(x, sample), targets, space).values())
        opt_net.zero_grad()
        loss.backward()
        opt_net.step()

    def step_b() -> None:
        paths = [[int(torch.randint(k, ())) for k in net.routing.branches] for _ in space.tasks]
        blocks["b"] = len(paths) * len(paths[0])
        loss = sum(task_losses(per_task_path_forward(net, x, paths), targets, space).values())
        opt_net.zero_grad()
        loss.backward()
        opt_net.step()

    def step_c() -> None:
        loss = sum(task_losses(shared(x), targets, space).values())
        opt_shared.zero_grad()
        loss.backward()
        opt_shared.step()

    (ta, ma), (tb, mb), (tc, mc) = (time_steps(s, steps, device) for s in (step_a, step_b, step_c))
    t, k = len(space.tasks), max(net.routing.branches)
    memory = (lambda m: f"  peak {m:8.1f} MiB") if device.type == "cuda" else (lambda m: "")
    print(f"{space.name}: T={t}, K={k}, batch {batch}, {device}")
    print(f"  (a) mtnas supernet      {1e3 * ta:8.2f} ms/step  (~{blocks['a']} block calls){memory(ma)}")
    print(f"  (b) per-task paths      {1e3 * tb:8.2f} ms/step  ({blocks['b']} block calls){memory(mb)}")
    print(f"  (c) all-shared network  {1e3 * tc:8.2f} ms/step{memory(mc)}")
    print(f"  (b)/(a) = {tb / ta:.2f}   goal >= 0.8*T/K = {0.8 * t / k:.2f}")
    print(f"  (a)/(c) = {ta / tc:.2f}   goal <= 1.15*K = {1.15 * k:.2f}")


def expected_cost_time(repeats: int = 200) -> None:
    tasks = tuple(f"t{i}" for i in range(40))
    routing = Routing(tasks, (8,) * 16, (True,) * 16)
    costs = [1.0] * 16
    for _ in range(5):
        routing.expected_cost(costs)
    start = time.perf_counter()
    for _ in range(repeats):
        routing.expected_cost(costs)
    forward = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        routing.zero_grad()
        routing.expected_cost(costs).backward()
    both = (time.perf_counter() - start) / repeats
    print(f"expected cost, 40 tasks, K=8, 16 layers: {1e3 * forward:.2f} ms forward, {1e3 * both:.2f} ms forward+backward (goal < 10 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--skip-cost", action="store_true", help="leave out the expected-cost timing")
    args = parser.parse_args()
    torch.set_num_threads(2)
    device = torch.device(args.device)
    space, bundle = load_resolved("digit_gratings")
    measure(space, bundle, args.steps, args.batch, device)
    big, names = forty_tasks(bundle)
    space40 = replace(space, name="digit_gratings_40", tasks=tuple(TaskConfig(n) for n in names),
                      routing=replace(space.routing, max_branches=8))
    measure(space40.resolve(big), big, args.steps, args.batch, device)
    if not args.skip_cost:
        expected_cost_time()


if __name__ == "__main__":
    main()
