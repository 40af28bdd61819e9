"""``mtnas retrain``: train an exported architecture at the full budget, resumably.

The tree of an ``arch.json`` is rebuilt as a :class:`~mtnas.branched.BranchedNet` from the space
stored in the file, trained on resident tensors (no DataLoader) with the space's optimizer and
schedule, checkpointed every epoch, and compared against single-task baselines (delta-m,
Maninis et al. 2019). On CUDA it uses bf16 autocast by default and optionally ``torch.compile``.
Launched by ``torchrun``, every rank trains its shard of one seeded permutation per epoch under
DistributedDataParallel and rank 0 alone evaluates and writes files.

Output folder::

    metrics.jsonl           one JSON line per epoch: train losses, val metrics, lr, time
    checkpoint/             weights.safetensors + state.pt of the last finished epoch
    final.json              val/test metrics, delta-m, cost, throughput (RetrainReport.to_dict)
    weights.safetensors     the final weights
    curves.png              train loss and val metric per task over epochs
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from mtnas.architecture import Architecture
from mtnas.balancing import make_balancer, optimizer_params, shared_parameters
from mtnas.branched import BranchedNet
from mtnas.checkpoint import find_checkpoint, load_checkpoint, load_into, load_weights, save_checkpoint, save_weights
from mtnas.cost import tree_cost
from mtnas.data import DatasetBundle, TaskData
from mtnas.delta_m import per_task_delta
from mtnas.errors import MtnasError, did_you_mean
from mtnas.io import atomic_write_text
from mtnas.space import SearchSpace, load_resolved
from mtnas.text import format_table
from mtnas.train import (
    SCHEDULES,
    NonFiniteLossError,
    TaskMetrics,
    check_finite,
    evaluate,
    make_optimizer,
    select_device,
    task_losses,
)
from mtnas.tree import BranchingTree

__all__ = ["PRECISIONS", "RetrainCurves", "RetrainReport", "curve_data", "resolve_precision", "retrain"]

STATE_FORMAT = "mtnas-retrain-state"
FINAL_FORMAT = "mtnas-retrain"
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
INITS = ("scratch", "inherited")
DATA_PLACEMENTS = ("auto", "device", "host")
#: ``data="auto"`` keeps a dataset on the accelerator up to this size (all splits together).
RESIDENT_MAX_BYTES = 2 * 1024**3


def data_placement(requested: str, bundle: DatasetBundle, device: torch.device) -> str:
    """``device`` or ``host`` for ``requested`` (auto, device, host): see :func:`retrain`."""
    if requested not in DATA_PLACEMENTS:
        raise MtnasError(f"unknown data placement {requested!r}{did_you_mean(requested, DATA_PLACEMENTS)}; "
                         f"valid: {', '.join(DATA_PLACEMENTS)}")
    if requested != "auto":
        return requested
    size = sum(s.nbytes for s in (bundle.train, bundle.val, bundle.test))
    return "device" if device.type == "cpu" or size <= RESIDENT_MAX_BYTES else "host"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


# --- precision and processes ---------------------------------------------------------------------


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision (bf16, fp16, fp32) for ``device``; an unsupported pair is an error.

    ``auto`` is bf16 autocast on CUDA (when the GPU has bf16) and fp32 elsewhere. bf16 runs on
    CUDA and CPU; fp16 (with a gradient scaler) on CUDA only.
    """
    if precision not in PRECISIONS:
        raise MtnasError(f"unknown precision {precision!r}{did_you_mean(precision, PRECISIONS)}; valid: {', '.join(PRECISIONS)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return "bf16" if cuda_bf16 else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise MtnasError(f"--precision fp16 needs a CUDA device, this run is on {device.type}; use bf16 or fp32")
    if precision == "bf16" and (device.type == "mps" or device.type == "cuda" and not cuda_bf16):
        raise MtnasError(f"--precision bf16 is not supported on this {device.type} device; use fp16 or fp32")
    return precision


@dataclass(frozen=True)
class _Dist:
    """This process's place in a ``torchrun`` launch (world_size 1 when launched alone)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> _Dist:
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            if world <= 1:
                return cls()
            return cls(world, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")))
        except (KeyError, ValueError) as exc:
            raise MtnasError(f"bad torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK): {exc}") from None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def _pick_device(requested: str, dist: _Dist) -> torch.device:
    device = select_device(requested)
    if not dist.active:
        return device
    if device.type == "cuda":
        return torch.device("cuda", dist.local_rank)  # one GPU per local rank, whatever index was asked
    if device.type != "cpu":
        raise MtnasError(f"torchrun runs on cuda (nccl) or cpu (gloo), not {device.type}; pass --device cpu or cuda")
    return device


@contextlib.contextmanager
def _process_group(dist: _Dist, device: torch.device) -> Iterator[None]:
    if not dist.active:
        yield
        return
    import torch.distributed as td

    if device.type == "cuda":
        torch.cuda.set_device(device)
    td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        td.destroy_process_group()


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainReport:
    """What a retrain produced: final metrics beside the single-task baselines, cost and speed."""

    arch: str
    out_dir: str
    space: SearchSpace
    tree: BranchingTree
    val: TaskMetrics
    test: TaskMetrics
    single_task: Mapping[str, TaskMetrics]  # split -> task -> metric -> value
    params: int
    flops: int
    epochs: int
    seconds: float
    samples_per_s: float
    device: str
    precision: str
    world_size: int
    seed: int
    init: str
    compiled: bool
    data_placement: str = "device"

    def delta_m(self, split: str = "test") -> float:
        deltas = per_task_delta(getattr(self, split), self.single_task[split], self.space)
        return sum(deltas.values()) / len(deltas)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``final.json``."""
        return {
            "format": FINAL_FORMAT,
            "version": 1,
            "arch": self.arch,
            "space": self.space.name,
            "tree": self.tree.to_dict(),
            "tree_key": self.tree.key,
            "sharing": self.tree.describe(),
            "val": self.val,
            "test": self.test,
            "single_task": dict(self.single_task),
            "delta_m": {s: self.delta_m(s) for s in ("val", "test")},
            "per_task_delta_test": per_task_delta(self.test, self.single_task["test"], self.space),
            "params": self.params,
            "flops": self.flops,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "samples_per_s": self.samples_per_s,
            "device": self.device,
            "precision": self.precision,
            "world_size": self.world_size,
            "seed": self.seed,
            "init": self.init,
            "compile": self.compiled,
            "data": self.data_placement,
        }

    def render(self) -> str:
        rows = [
            [t.name, m, self.val[t.name][m], self.test[t.name][m], self.single_task["test"][t.name][m]]
            for t in self.space.tasks
            for m in t.metrics
        ]
        table = format_table(["task", "metric", "val", "test", "single-task test"], rows)
        ranks = f" x{self.world_size}" if self.world_size > 1 else ""
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        return (
            f"tree: {self.tree.describe()}  ({epochs} on {self.device}{ranks}, {self.precision})\n{table}\n"
            f"params {self.params:,}  FLOPs {self.flops:,}  {self.samples_per_s:,.0f} samples/s  "
            f"trained in {self.seconds:.1f}s\n"
            f"delta-m: {self.delta_m('test'):+.2f}% test, {self.delta_m('val'):+.2f}% val\n"
            f"written to {self.out_dir}/ (final.json, metrics.jsonl, weights.safetensors, curves.png)"
        )


class RetrainCurves(NamedTuple):
    """Per-epoch series for ``curves.png``: train loss per task, val metric per (task, metric)."""

    epochs: list[int]
    train_loss: dict[str, list[float]]
    val: dict[str, list[float]]  # "task metric" -> values


def curve_data(history: list[Mapping[str, Any]], space: SearchSpace) -> RetrainCurves:
    """The series to draw, from the lines of ``metrics.jsonl``."""
    return RetrainCurves(
        epochs=[int(h["epoch"]) for h in history],
        train_loss={t: [float(h["train_loss"][t]) for h in history] for t in space.task_names},
        val={
            f"{t.name} {t.metrics[0]}": [float(h["val"][t.name][t.metrics[0]]) for h in history] for t in space.tasks
        },
    )


def plot_curves(curves: RetrainCurves, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise MtnasError("curves.png needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    for task, values in curves.train_loss.items():
        ax_loss.plot(curves.epochs, values, marker=".", label=task)
    for name, values in curves.val.items():
        ax_val.plot(curves.epochs, values, marker=".", label=name)
    ax_loss.set(title="train loss", xlabel="epoch", ylabel="loss (weighted)")
    ax_val.set(title="val metric", xlabel="epoch")
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


# --- the run -------------------------------------------------------------------------------------


def retrain(
    arch_path: str | Path,
    *,
    out_dir: str | Path | None = None,
    epochs: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    compile: bool = False,
    resume: bool = False,
    init: str = "scratch",
    weights: str | Path | None = None,
    seed: int | None = None,
    data: str = "auto",
    progress: bool = True,
) -> RetrainReport | None:
    """Train the architecture of ``arch_path`` at the space's full budget and write its results.

    Args:
        arch_path: an ``arch.json``.
        out_dir: where files go (default: ``retrain/`` beside the arch.json).
        epochs: override the space's ``training.epochs``.
        device: auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.
        precision: auto, bf16, fp16 or fp32 (see :func:`resolve_precision`).
        compile: wrap the model in ``torch.compile``.
        resume: continue from ``out_dir/checkpoint`` with its seed, epochs, precision and init;
            the result equals an uninterrupted run (bit for bit on CPU).
        init: ``scratch`` (fresh seeded weights; the backbone from ``backbone.weights`` when the space
            names a pretrained file) or ``inherited`` (from ``weights``).
        weights: a weights file for ``init="inherited"`` (default: ``weights.safetensors``
            beside the arch.json).
        seed: default: the space's seed (on resume: the checkpoint's).
        data: where the dataset lives: ``device`` (whole, batches are index slices), ``host``
            (CPU memory, pinned on CUDA, each batch copied over), or ``auto``: device when the
            splits take at most ``RESIDENT_MAX_BYTES``.
        progress: show a tqdm bar over epochs.

    Returns:
        The report on rank 0; None on the other ranks of a ``torchrun`` launch.
    """
    arch_path = Path(arch_path)
    arch = Architecture.load(arch_path)
    space, tree = arch.resolved_space(), arch.tree
    out = Path(out_dir) if out_dir is not None else arch_path.parent / "retrain"
    if init not in INITS:
        raise MtnasError(f"unknown init {init!r}{did_you_mean(init, INITS)}; valid: {', '.join(INITS)}")
    if weights is not None and init != "inherited":
        raise MtnasError("--weights is only read with --init inherited")
    if epochs is not None and epochs < 1:
        raise MtnasError(f"--epochs must be >= 1, got {epochs}")
    dist = _Dist.from_env()
    dev = _pick_device(device, dist)
    prec = resolve_precision(precision, dev)

    checkpoint = out / "checkpoint"
    given_precision = None if precision == "auto" else prec
    resumed = _resume_from(checkpoint, tree, seed=seed, epochs=epochs, precision=given_precision) if resume else None
    if resumed is not None:
        config = resumed[1]["config"]
        seed, epochs, init = config["seed"], config["epochs"], config["init"]
        prec = resolve_precision(config["precision"], dev)
    elif find_checkpoint(checkpoint) is not None:
        raise MtnasError(f"{out} already holds a retrain checkpoint; pass --resume to continue it, or -o for a new folder")
    seed = space.seed if seed is None else seed
    torch.manual_seed(seed)
    # identical on every rank; a pretrained backbone file (backbone.weights) is read only when
    # nothing else will overwrite the weights: a scratch start is "from the pretrained backbone"
    model = BranchedNet.from_space(tree, space, pretrained=resumed is None and init == "scratch")
    if resumed is not None:
        load_into(model, resumed[0], checkpoint / "weights.safetensors")
    elif init == "inherited":
        source = Path(weights) if weights is not None else arch_path.parent / "weights.safetensors"
        load_into(model, load_weights(source, tree_key=tree.key), source)
    epochs = epochs or space.training.epochs

    space, bundle = load_resolved(space)
    with _process_group(dist, dev):
        run = _Run(model, space, bundle, tree, dev=dev, precision=prec, compile=compile, dist=dist,
                   epochs=epochs, seed=seed, init=init, out=out, progress=progress, data=data)
        if resumed is not None:
            run.restore(resumed[1])
        run.fit()
        dist.barrier()
    if not dist.main:
        return None
    return run.finish(arch_path)


def _resume_from(
    checkpoint: Path, tree: BranchingTree, *, seed: int | None, epochs: int | None, precision: str | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The checkpoint's weights and state, after checking it fits this run.

    Every rank of a torchrun launch checks alike, so none is left waiting for a rank that stopped.
    """
    if find_checkpoint(checkpoint) is None:
        raise MtnasError(f"{checkpoint}: no checkpoint to resume from; run without --resume first")
    weights, state = load_checkpoint(checkpoint, tree_key=tree.key)
    config = state.get("config")
    if state.get("format") != STATE_FORMAT or not isinstance(config, dict) or not {"seed", "epochs", "init", "precision"} <= set(config):
        raise MtnasError(f"{checkpoint / 'state.pt'}: not an mtnas retrain state")
    for name, given in (("seed", seed), ("epochs", epochs), ("precision", precision)):
        if given is not None and given != config[name]:
            raise MtnasError(
                f"--{name} {given} differs from the checkpoint's {config[name]}; resume with the same "
                f"--{name} (or none), or start a fresh run in another folder"
            )
    return weights, state


class _Run:
    """The training loop and its state: what a checkpoint saves and restores."""

    def __init__(
        self, model: BranchedNet, space: SearchSpace, bundle: DatasetBundle, tree: BranchingTree, *, dev: torch.device,
        precision: str, compile: bool, dist: _Dist, epochs: int, seed: int, init: str, out: Path, progress: bool,
        data: str = "auto",
    ) -> None:
        self.model, self.space, self.bundle, self.tree = model.to(dev).train(), space, bundle, tree
        self.dev, self.precision, self.compiled, self.dist = dev, precision, compile, dist
        self.epochs, self.seed, self.init, self.out, self.progress = epochs, seed, init, out, progress
        self.placement = data_placement(data, bundle, dev)
        splits = [s.only(space.task_names) for s in (bundle.train, bundle.val)]
        if self.placement == "device":  # the whole dataset lives on the device: batches are index slices
            splits = [s.to(dev) for s in splits]
        elif dev.type == "cuda":  # host memory, page-locked: each batch is copied while the GPU computes
            splits = [s.pin_memory() for s in splits]
        self.train_data, self.val_data = splits
        cfg = space.training
        self.local_batch = cfg.batch_size // dist.world_size
        if self.local_batch < 1:
            raise MtnasError(f"training.batch_size {cfg.batch_size} is smaller than the {dist.world_size} ranks")
        self.global_batch = self.local_batch * dist.world_size
        n = len(self.train_data)
        # Every rank needs at least one sample per step, so a tail shorter than the ranks is dropped.
        self.steps = n // self.global_batch + (1 if n % self.global_batch >= dist.world_size else 0)
        net: nn.Module = self.model
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
        self.net = torch.compile(net) if compile else net
        self.balancer = make_balancer(cfg.balancing, space.task_names, seed=seed, device=dev)
        if dist.active and cfg.balancing == "pcgrad":  # one backward per task: DDP reduces once per step
            raise MtnasError("training.balancing pcgrad does not run under torchrun yet; retrain on one process")
        self.shared = shared_parameters(self.model)
        self.optimizer = make_optimizer(optimizer_params(list(self.model.parameters()), self.balancer), cfg)
        self.schedule = SCHEDULES.get(cfg.schedule)(self.optimizer, epochs * self.steps)
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.generator = torch.Generator().manual_seed(seed)  # the shuffling order, equal on every rank
        self.epoch = 0  # finished epochs
        self.history: list[dict[str, Any]] = []

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = _DTYPES[self.precision]
        return torch.autocast(self.dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    # -- checkpoint state ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": 1,
            "epoch": self.epoch,
            "config": {"seed": self.seed, "epochs": self.epochs, "precision": self.precision,
                       "world_size": self.dist.world_size, "init": self.init, "tree_key": self.tree.key},
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "history": self.history,
            "balancer": self.balancer.state_dict(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            with contextlib.suppress(RuntimeError, IndexError):  # another GPU count: keep the fresh state
                torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.balancer.load_state_dict(state.get("balancer", {}))
        if self.dist.main:  # metrics.jsonl may hold a line past the checkpoint, or half a line
            self._write_metrics()

    # -- training --------------------------------------------------------------------------------

    def fit(self) -> None:
        from tqdm.auto import tqdm

        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.epoch == 0:
                self._write_metrics()
        bar = tqdm(total=self.epochs, initial=self.epoch, desc="retrain", unit="epoch",
                   disable=not (self.progress and self.dist.main))
        with bar:
            while self.epoch < self.epochs:
                line = self._epoch()
                self.epoch += 1
                self.history.append(line)  # on every rank: the balancer reads its train losses
                if self.dist.main:
                    line["val"] = self._evaluate(self.val_data)
                    with (self.out / "metrics.jsonl").open("a") as f:
                        f.write(json.dumps(line) + "\n")
                    save_checkpoint(
                        self.out / "checkpoint", self.model.state_dict(), self.state(), tree_key=self.tree.key,
                        extra_metadata={"tree": self.tree.describe(), "epoch": str(self.epoch)},
                    )
                    bar.set_postfix(loss=f"{line['train_loss_total']:.3f}")
                bar.update(1)
                self.dist.barrier()

    def _epoch(self) -> dict[str, Any]:
        n, rank, world = len(self.train_data), self.dist.rank, self.dist.world_size
        lr = self.optimizer.param_groups[0]["lr"]
        order = torch.randperm(n, generator=self.generator).to(self.train_data.inputs.device)
        sums = {t: torch.zeros((), device=self.dev) for t in self.space.task_names}
        samples = 0
        self.balancer.start_epoch(self.epoch, [h["train_loss"] for h in self.history])
        self._sync()
        start = time.perf_counter()
        for step in range(self.steps):
            idx = order[step * self.global_batch : (step + 1) * self.global_batch]
            samples += len(idx)
            if world > 1:
                idx = idx.tensor_split(world)[rank]
            batch = self.train_data.select(idx)
            if self.placement == "host":
                batch = batch.to(self.dev, non_blocking=True)
            with self._autocast():
                losses = task_losses(self.net(batch.inputs), batch.targets, self.space, batch.masks)
            self.optimizer.zero_grad(set_to_none=True)
            self.balancer.backward(losses, self.shared, scale=self.scaler.scale if self.scaler is not None else None)
            for p in self.balancer.parameters() if world > 1 else ():  # outside DDP: average them by hand
                torch.distributed.all_reduce(p.grad)
                p.grad /= world
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.schedule.step()
            for name, value in losses.items():
                sums[name] += value.detach().float()
        means = torch.stack([sums[t] for t in self.space.task_names]) / self.steps
        if self.dist.active:  # the average over ranks of each rank's mean loss
            torch.distributed.all_reduce(means)
            means /= world
        self._sync()
        seconds = time.perf_counter() - start
        train_loss = dict(zip(self.space.task_names, means.tolist()))
        try:
            check_finite({t: torch.tensor(v) for t, v in train_loss.items()}, f"epoch {self.epoch + 1}")
        except NonFiniteLossError as exc:
            raise MtnasError(
                f"training diverged: {exc}; lower training.lr or use --precision fp32 "
                f"(the checkpoint of epoch {self.epoch} is kept)"
            ) from None
        return {
            "epoch": self.epoch + 1,
            "train_loss": train_loss,
            "train_loss_total": sum(train_loss.values()),
            "lr": lr,
            "seconds": seconds,
            "samples_per_s": samples / seconds if seconds > 0 else 0.0,
        }

    def _evaluate(self, split: TaskData) -> TaskMetrics:
        with self._autocast():
            return evaluate(self.model, split, self.space)

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)

    def _write_metrics(self) -> None:
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))

    # -- results -----------------------------------------------------------------------------------

    def finish(self, arch_path: Path) -> RetrainReport:
        """Final evaluation, baselines, and the files of rank 0."""
        from mtnas.baselines import compute_baselines

        test_data = self.bundle.test.only(self.space.task_names)
        test_data = test_data.to(self.dev) if self.placement == "device" else test_data
        val, test = self._evaluate(self.val_data), self._evaluate(test_data)
        # single-task networks trained for as many epochs as this retrain: delta-m compares like with like
        budget = replace(self.space, training=replace(self.space.training, epochs=self.epochs))
        baselines = compute_baselines(budget, self.bundle, device=self.dev, seed=self.seed, progress=self.progress)
        cost = tree_cost(self.tree, self.space)
        seconds = sum(h["seconds"] for h in self.history)
        samples = sum(h["samples_per_s"] * h["seconds"] for h in self.history)
        report = RetrainReport(
            arch=str(arch_path), out_dir=str(self.out), space=self.space, tree=self.tree, val=val, test=test,
            single_task={s: baselines.metrics(s) for s in ("val", "test")}, params=cost.params, flops=cost.flops,
            epochs=self.epochs, seconds=seconds, samples_per_s=samples / seconds if seconds > 0 else 0.0,
            device=str(self.dev) if not self.dist.active else self.dev.type, precision=self.precision,
            world_size=self.dist.world_size, seed=self.seed, init=self.init, compiled=self.compiled, data_placement=self.placement,
        )
        save_weights(self.out / "weights.safetensors", self.model.state_dict(), tree_key=self.tree.key,
                     extra_metadata={"tree": self.tree.describe(), "epochs": str(self.epochs)})
        plot_curves(curve_data(self.history, self.space), self.out / "curves.png")
        atomic_write_text(self.out / "final.json", json.dumps(report.to_dict(), indent=2) + "\n")
        return report

