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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtnas.core import (
    MtnasError,
    atomic_write_text,
    did_you_mean,
    format_table,
    naming,
)
from mtnas.data import DatasetBundle
from mtnas.model import (
    BranchedNet,
    arch_space,
    find_checkpoint,
    load_checkpoint,
    load_into,
    load_weights,
    remove_checkpoint,
    save_checkpoint,
    save_weights,
    tree_cost,
)
from mtnas.nn import shared_parameters
from mtnas.space import SearchSpace, load_resolved
from mtnas.train._baselines import compute_baselines
from mtnas.train._delta_m import per_task_delta
from mtnas.train._device import Dist, pick_device, process_group, resolve_precision
from mtnas.train._engine import Engine, NonFiniteLossError
from mtnas.train._prefetch import prefetch_batches
from mtnas.train._retrain_state import INITS, STATE_FORMAT, content_problem, damaged_state, state_problem
from mtnas.train._tasks import TaskMetrics
from mtnas.train._trackers import Tracking, check_trackers, tracking
from mtnas.tree import Architecture, BranchingTree
from mtnas.viz import RetrainCurves, draw_curves

__all__ = ["DATA_PLACEMENTS", "INITS", "RetrainReport", "curve_data", "data_placement", "retrain"]

FINAL_FORMAT = "mtnas-retrain"
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


def curve_data(history: list[Mapping[str, Any]], space: SearchSpace) -> RetrainCurves:
    """The series to draw, from the lines of ``metrics.jsonl``."""
    return RetrainCurves(
        epochs=[int(h["epoch"]) for h in history],
        train_loss={t: [float(h["train_loss"][t]) for h in history] for t in space.task_names},
        val={
            f"{t.name} {t.metrics[0]}": [float(h["val"][t.name][t.metrics[0]]) for h in history] for t in space.tasks
        },
    )


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
    restart: bool = False,
    init: str = "scratch",
    weights: str | Path | None = None,
    seed: int | None = None,
    data: str = "auto",
    progress: bool = True,
    on_start: Callable[[int], None] | None = None,
    log_to: Sequence[str] = (),
) -> RetrainReport | None:
    """Train the architecture of ``arch_path`` for its space's ``training.epochs`` (or ``epochs``) and write its results.

    Args:
        arch_path: an ``arch.json``.
        out_dir: where files go (default: ``retrain/`` beside the arch.json).
        epochs: override the space's ``training.epochs``.
        device: auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.
        precision: auto, bf16, fp16 or fp32 (see :func:`resolve_precision`).
        compile: wrap the model in ``torch.compile``.
        resume: continue from ``out_dir/checkpoint`` with its seed, epochs, precision and init;
            the result equals an uninterrupted run (bit for bit on CPU). The checkpoint is checked
            first, against the state this run would create (RNG states, optimizer groups and
            state shapes, schedule, history): a damaged or edited one is one error line.
        restart: discard a checkpoint in ``out_dir`` (a damaged one, say) and train from scratch.
        init: ``scratch`` (fresh seeded weights; the backbone from ``backbone.weights`` when the space
            names a pretrained file) or ``inherited`` (from ``weights``).
        weights: a weights file for ``init="inherited"`` (default: ``weights.safetensors``
            beside the arch.json).
        seed: default: the space's seed (on resume: the checkpoint's).
        data: where the dataset lives: ``device`` (whole, batches are index slices), ``host``
            (CPU memory, pinned on CUDA, each batch copied over), or ``auto``: device when the
            splits take at most ``RESIDENT_MAX_BYTES``.
        progress: show a tqdm bar over epochs.
        on_start: told the number of epochs once everything is checked, just before training
            starts (on rank 0): ``mtnas retrain`` says there how long it trains.
        log_to: trackers (``mtnas.train.TRACKERS``: tensorboard, mlflow) that get every epoch's
            curves, in ``OUT/logs/``: run ``retrain`` (experiment ``retrain``), the final test
            metrics and delta-m at the last epoch's step, the baselines it trains under ``baselines/``.

    Returns:
        The report on rank 0; None on the other ranks of a ``torchrun`` launch.
    """
    log_to = check_trackers(log_to)  # a missing tracker package is an error before any work
    arch_path = Path(arch_path)
    arch = Architecture.load(arch_path)
    space, tree = arch_space(arch, str(arch_path)), arch.tree
    out = Path(out_dir) if out_dir is not None else arch_path.parent / "retrain"
    if init not in INITS:
        raise MtnasError(f"unknown init {init!r}{did_you_mean(init, INITS)}; valid: {', '.join(INITS)}")
    if weights is not None and init != "inherited":
        raise MtnasError("--weights is only read with --init inherited")
    if epochs is not None and epochs < 1:
        raise MtnasError(f"--epochs must be >= 1, got {epochs}")
    if resume and restart:
        raise MtnasError("--resume continues the checkpoint and --restart discards it: give one of them")
    dist = Dist.from_env()
    dev = pick_device(device, dist)
    prec = resolve_precision(precision, dev)

    checkpoint = out / "checkpoint"
    given_precision = None if precision == "auto" else prec
    resumed = _resume_from(checkpoint, tree, seed=seed, epochs=epochs, precision=given_precision) if resume else None
    if resumed is not None:
        config = resumed[1]["config"]
        seed, epochs, init = config["seed"], config["epochs"], config["init"]
        prec = resolve_precision(config["precision"], dev)
    elif restart:
        if dist.main:
            remove_checkpoint(checkpoint)
    elif find_checkpoint(checkpoint) is not None:
        raise MtnasError(f"{out} already holds a retrain checkpoint; pass --resume to continue it, --restart to "
                         "discard it, or -o for a new folder")
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
    with process_group(dist, dev):
        run = _Run(model, space, bundle, tree, dev=dev, precision=prec, compile=compile, dist=dist,
                   epochs=epochs, seed=seed, init=init, out=out, progress=progress, data=data,
                   scope=Tracking(log_to, out / "logs", "retrain") if log_to and dist.main else None)
        if resumed is not None:
            run.restore(resumed[1], checkpoint)
        if on_start is not None and dist.main:
            on_start(epochs)
        try:
            run.fit()
        except BaseException:
            if run.log is not None:  # the curves so far stay; the run says it failed
                run.log.end(failed=True)
            raise
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
    found = find_checkpoint(checkpoint)
    if found is None:
        raise MtnasError(f"{checkpoint}: no checkpoint to resume from; run without --resume first")
    try:
        weights, state = load_checkpoint(checkpoint, tree_key=tree.key)
    except MtnasError as exc:
        raise MtnasError(f"{exc}; start over in this folder with --restart, or a fresh run in another folder (-o)") from None
    problem = state_problem(state, tree)
    if problem is not None:
        raise damaged_state(found, problem)
    config = state["config"]
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
        precision: str, compile: bool, dist: Dist, epochs: int, seed: int, init: str, out: Path, progress: bool,
        data: str = "auto", scope: Tracking | None = None,
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
            if cfg.balancing == "pcgrad":  # one backward per task: DDP reduces once per step
                raise MtnasError("training.balancing pcgrad does not run under torchrun yet; retrain on one process")
            net = nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
        self.net = torch.compile(net) if compile else net
        self.engine = Engine(space=space, params=list(self.model.parameters()), shared=shared_parameters(self.model),
                             total_steps=epochs * self.steps, device=dev, seed=seed, precision=precision,
                             world_size=dist.world_size)
        self.generator = torch.Generator().manual_seed(seed)  # the shuffling order, equal on every rank
        self.epoch = 0  # finished epochs
        self.history: list[dict[str, Any]] = []  # the lines of metrics.jsonl
        self.scope, self.log = scope, None  # where the curves go (rank 0), and the open run there

    # -- checkpoint state ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        engine = self.engine.state_dict()
        return {
            "format": STATE_FORMAT,
            "version": 1,
            "epoch": self.epoch,
            "config": {"seed": self.seed, "epochs": self.epochs, "precision": self.precision,
                       "world_size": self.dist.world_size, "init": self.init, "tree_key": self.tree.key},
            "optimizer": engine["optimizer"],
            "schedule": engine["schedule"],
            "scaler": engine["scaler"],
            "balancer": engine["balancer"],
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "history": self.history,
        }

    def state_problem(self, state: Mapping[str, Any]) -> str | None:
        """What keeps ``state`` (from a checkpoint) from resuming this run (None: it fits)."""
        return content_problem(state, self.state(), self.engine.optimizer.param_groups, self.space)

    def restore(self, state: Mapping[str, Any], checkpoint: Path) -> None:
        problem = self.state_problem(state)
        if problem is not None:  # on every rank alike: none is left waiting for one that stopped
            raise damaged_state(find_checkpoint(checkpoint) or checkpoint, problem)
        self.history = list(state["history"])
        self.engine.load_state_dict({**state, "history": [h["train_loss"] for h in self.history]})
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            with contextlib.suppress(RuntimeError, IndexError):  # another GPU count: keep the fresh state
                torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.epoch = int(state["epoch"])
        if self.dist.main:  # metrics.jsonl may hold a line past the checkpoint, or half a line
            self._write_metrics()

    # -- training --------------------------------------------------------------------------------

    def fit(self) -> None:
        from tqdm.auto import tqdm

        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.epoch == 0:
                self._write_metrics()
            if self.scope is not None:
                self.log = self.scope.open("retrain", {"tree": self.tree.describe(), "seed": self.seed})
        bar = tqdm(total=self.epochs, initial=self.epoch, desc="retrain", unit="epoch",
                   disable=not (self.progress and self.dist.main))
        with bar:
            while self.epoch < self.epochs:
                line = self._epoch()
                self.epoch += 1
                self.history.append(line)
                if self.dist.main:
                    line["val"] = self.engine.evaluate(self.model, self.val_data)
                    with naming(self.out / "metrics.jsonl"), (self.out / "metrics.jsonl").open("a") as f:
                        f.write(json.dumps(line) + "\n")
                    if self.log is not None:  # the line just written, in the trackers
                        self.log.log_epoch(line["epoch"], line["train_loss"], line["val"], line["lr"],
                                           samples_per_s=line["samples_per_s"])
                    save_checkpoint(
                        self.out / "checkpoint", self.model.state_dict(), self.state(), tree_key=self.tree.key,
                        extra_metadata={"tree": self.tree.describe(), "epoch": str(self.epoch)},
                    )
                    bar.set_postfix(loss=f"{line['train_loss_total']:.3f}")
                bar.update(1)
                self.dist.barrier()

    def _epoch(self) -> dict[str, Any]:
        n, rank, world = len(self.train_data), self.dist.rank, self.dist.world_size
        lr = self.engine.lr
        order = torch.randperm(n, generator=self.generator).to(self.train_data.inputs.device)
        samples = 0
        self.engine.start_epoch(self.epoch)
        self._sync()
        start = time.perf_counter()
        shards = []  # this rank's share of each global batch of one seeded order
        for step in range(self.steps):
            idx = order[step * self.global_batch : (step + 1) * self.global_batch]
            samples += len(idx)
            shards.append(idx.tensor_split(world)[rank] if world > 1 else idx)
        # host-resident data: gathered into pinned buffers and copied on a side stream (prefetch)
        batches = (prefetch_batches(self.train_data, shards, self.dev) if self.placement == "host"
                   else (self.train_data.select(idx) for idx in shards))
        try:
            for step, batch in enumerate(batches):
                self.engine.step(lambda: self.net(batch.inputs), batch, where=f"epoch {self.epoch + 1}, step {step}")
        except NonFiniteLossError as exc:
            raise MtnasError(
                f"training diverged: {exc}; lower training.lr or use --precision fp32 "
                f"(the checkpoint of epoch {self.epoch} is kept)"
            ) from None
        train_loss = self.engine.end_epoch()
        self._sync()
        seconds = time.perf_counter() - start
        return {
            "epoch": self.epoch + 1,
            "train_loss": train_loss,
            "train_loss_total": sum(train_loss.values()),
            "lr": lr,
            "seconds": seconds,
            "samples_per_s": samples / seconds if seconds > 0 else 0.0,
        }

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)

    def _write_metrics(self) -> None:
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))

    # -- results -----------------------------------------------------------------------------------

    def finish(self, arch_path: Path) -> RetrainReport:
        """Final evaluation, baselines, and the files of rank 0."""
        test_data = self.bundle.test.only(self.space.task_names)
        test_data = test_data.to(self.dev) if self.placement == "device" else test_data
        val, test = self.engine.evaluate(self.model, self.val_data), self.engine.evaluate(self.model, test_data)
        # single-task networks trained for as many epochs as this retrain: delta-m compares like with like
        budget = replace(self.space, training=replace(self.space.training, epochs=self.epochs))
        with tracking(self.scope.scope("baselines/") if self.scope is not None else None):
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
        draw_curves(curve_data(self.history, self.space), self.out / "curves.png")
        atomic_write_text(self.out / "final.json", json.dumps(report.to_dict(), indent=2) + "\n")
        if self.log is not None:  # final.json's test metrics and delta-m, at the last epoch's step
            self.log.log({**{f"test/{t}/{m}": v for t, ms in test.items() for m, v in ms.items()},
                          "delta_m/test": report.delta_m("test"), "delta_m/val": report.delta_m("val")}, self.epochs)
            self.log.end()
        return report

