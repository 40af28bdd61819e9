"""Trainings that stop and resume exactly: a :class:`Checkpoint` of a training at its stop.

A training of an ``epochs``-epoch schedule (``mtnas.train.train_model``) stopped after ``epoch``
epochs resumes from its checkpoint to a later stop of the same schedule as if it had never
stopped: training to s1 and resuming to s2 gives the weights and metrics of training to s2
straight. A successive-halving search trains every candidate for the first part of its schedule
and continues only the survivors, each from its checkpoint, so the winner's last rung is its
training at the search's budget.

A checkpoint holds what the epochs after the stop read:

- ``weights``: the model's state dict (parameters and buffers: BatchNorm's running statistics);
- ``optimizer``: each parameter's optimizer state, by the parameter's name (Adam's ``step``,
  ``exp_avg``, ``exp_avg_sq``; SGD's ``momentum_buffer``), the balancer's own weights named
  ``balancer.{i}``; ``groups``: the hyperparameters of the optimizer's parameter groups (the
  learning rate the schedule set last, among them);
- ``schedule``, ``balancer``, ``history``: the learning-rate schedule's state, the balancer's state
  (uncertainty weighting's log-variances) and each finished epoch's mean task losses (what DWA
  reads);
- ``generator``, ``torch_rng``, ``cuda_rng``: the states of the batch order's generator and of
  torch's random number generators (dropout);
- ``seconds``: the training time so far.

Keyed by names rather than by the optimizer's parameter numbers, a checkpoint fits both a tree's
``BranchedNet`` and its slice of a stacked training (``mtnas.train.TreeStack``, which slices a
stacked checkpoint into its members' and stacks theirs back).

On disk (:func:`save_resume_state`) the weights go to a weights file of their own, as a unit's
weights always do (``mtnas.model.save_weights``), and the rest to one ``.safetensors`` file: each
kind of optimizer state as one flat tensor over every parameter (a few tensors, not three per
parameter: a tiny network's file stays about twice its weights, plus 10 kB of RNG states), the
balancer's and the RNG states as tensors, everything else as JSON in the file's metadata; the
metadata binds the file to its unit and tree and holds a SHA-256 of the tensors and the JSON. No
pickle: :func:`load_resume_state` reads tensors and JSON only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from mtnas.core import MtnasError, atomic_write_bytes, first_few, load_json_text, short_repr
from mtnas.model import fit_problems, read_safetensors, tensors_sha256
from mtnas.nn import Balancer
from mtnas.train._retrain_state import like

__all__ = ["BALANCER_PREFIX", "RESUME_FORMAT", "SHARED_STATE", "Checkpoint", "canonical", "capture", "join_states",
           "load_resume_state", "present_states", "restore", "resume_problem", "save_resume_state", "task_rows"]

RESUME_FORMAT = "mtnas-resume-state"
RESUME_VERSION = "1"
#: How the balancer's own weights are named in a checkpoint's optimizer state.
BALANCER_PREFIX = "balancer."
#: Optimizer state that counts steps: one value for every parameter of a training, never sliced or
#: stacked (the rest of a parameter's state is per element, of the parameter's shape).
SHARED_STATE = ("step",)


class Engine(Protocol):
    """What a checkpoint reads and writes of a training's engine (``mtnas.train.Engine``)."""

    optimizer: torch.optim.Optimizer
    balancer: Balancer  # its ``parameters()`` are in the optimizer after the model's

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A training (seeded by ``seed``) stopped after ``epoch`` epochs of its ``epochs``-epoch
    schedule: everything it needs to go on (see the module docstring). Tensors are CPU copies."""

    seed: int
    epochs: int
    epoch: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, dict[str, torch.Tensor]]
    groups: tuple[dict[str, Any], ...]
    schedule: dict[str, Any]
    balancer: dict[str, torch.Tensor]
    history: tuple[dict[str, float], ...]
    generator: torch.Tensor
    torch_rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None
    seconds: float = field(default=0.0)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int):
            raise ValueError(f"a checkpoint of seed {self.seed!r}: expected a whole number")
        if not (isinstance(self.epochs, int) and isinstance(self.epoch, int) and 0 <= self.epoch <= self.epochs
                and self.epochs >= 1):
            raise ValueError(f"a checkpoint after epoch {self.epoch!r} of {self.epochs!r}: expected 0 <= epoch <= "
                             "epochs, epochs >= 1")
        if len(self.history) != self.epoch:
            raise ValueError(f"a checkpoint after epoch {self.epoch} holds {len(self.history)} epochs of history")

    @property
    def finished(self) -> bool:
        """Whether the schedule has ended: nothing is left to resume."""
        return self.epoch >= self.epochs


def _parameters(model: nn.Module, engine: Engine) -> list[tuple[str, nn.Parameter]]:
    """The optimizer's parameters in its order, by name: the model's, then the balancer's."""
    return list(model.named_parameters()) + [(f"{BALANCER_PREFIX}{i}", p)
                                              for i, p in enumerate(engine.balancer.parameters())]


def _cpu(value: torch.Tensor) -> torch.Tensor:
    return value.detach().to("cpu", copy=True)


def capture(model: nn.Module, engine: Engine, generator: torch.Generator, *, seed: int, epochs: int, epoch: int,
            seconds: float) -> Checkpoint:
    """The checkpoint of a training (``model``, its ``engine`` and batch-order ``generator``,
    seeded by ``seed``) after ``epoch`` epochs of ``epochs``."""
    names = [n for n, _ in _parameters(model, engine)]
    state = engine.state_dict()
    optimizer = state["optimizer"]
    order = [i for g in optimizer["param_groups"] for i in g["params"]]
    if len(order) != len(names):
        raise ValueError(f"the optimizer holds {len(order)} parameters, the model and its balancer {len(names)}")
    named = dict(zip(order, names))
    by_name: dict[str, dict[str, torch.Tensor]] = {}
    for pid, entry in optimizer["state"].items():
        name = named[pid]
        for key, value in entry.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {key!r} of {name} is a {type(value).__name__}, not a tensor")
        by_name[name] = {key: _cpu(value) for key, value in entry.items()}
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return Checkpoint(
        seed=seed, epochs=epochs, epoch=epoch, weights={k: _cpu(v) for k, v in model.state_dict().items()},
        optimizer=by_name,
        groups=tuple({k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer["param_groups"]),
        schedule=copy.deepcopy(state["schedule"]), balancer={k: _cpu(v) for k, v in state["balancer"].items()},
        history=tuple(dict(h) for h in state["history"]), generator=generator.get_state().clone(),
        torch_rng=torch.get_rng_state().clone(),
        cuda_rng=torch.cuda.get_rng_state(device).clone() if device.type == "cuda" else None, seconds=float(seconds),
    )


def resume_problem(checkpoint: Checkpoint, model: nn.Module, engine: Engine, generator: torch.Generator, *,
                   seed: int, epochs: int, stop: int, tasks: Sequence[str]) -> str | None:
    """What keeps ``checkpoint`` from resuming the training of ``model`` (with a fresh ``engine``
    and ``generator``) seeded by ``seed`` over ``tasks`` with an ``epochs``-epoch schedule up to
    ``stop``, or None: its seed, its schedule, its stop, weights of the model's names and shapes, optimizer state of the
    model's parameters and their shapes, parameter groups, schedule and balancer states like the
    engine's, RNG states of this machine's sizes, and epoch records of these tasks."""
    if checkpoint.seed != seed:
        return f"it is a training of seed {checkpoint.seed}, this one of seed {seed}"
    if checkpoint.epochs != epochs:
        return f"it is a training of {checkpoint.epochs} epochs, this one of {epochs}"
    if checkpoint.epoch > stop:
        return f"it stopped after epoch {checkpoint.epoch}, past this training's stop at {stop}"
    problems = fit_problems(model.state_dict(), checkpoint.weights)
    if problems:
        return f"its weights do not fit the model: {'; '.join(problems)}"
    params = dict(_parameters(model, engine))
    for name, entry in checkpoint.optimizer.items():
        if name not in params:
            return f"it holds optimizer state of {short_repr(name, 40)}, not a parameter of this model"
        for key, value in entry.items():
            if not value.dtype.is_floating_point:
                return f"optimizer state {key} of {name} is a {value.dtype} tensor, expected floating point"
            shape = () if key in SHARED_STATE else tuple(params[name].shape)
            if tuple(value.shape) != shape:
                return f"optimizer state {key} of {name} has shape {tuple(value.shape)}, expected {shape}"
    fresh = engine.state_dict()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in fresh["optimizer"]["param_groups"]]
    for given, own, where in ((list(checkpoint.groups), groups, "optimizer groups"),
                              (checkpoint.schedule, fresh["schedule"], "schedule"),
                              (checkpoint.balancer, fresh["balancer"], "balancer")):
        problem = like(given, own, where)
        if problem is not None:
            return problem
    for name, given, own in (("generator", checkpoint.generator, generator.get_state()),
                             ("torch_rng", checkpoint.torch_rng, torch.get_rng_state())):
        if given.dtype != torch.uint8 or given.shape != own.shape:
            return f"its {name} is not an RNG state of this machine's ({own.numel()} bytes)"
    for i, line in enumerate(checkpoint.history):
        if set(line) != set(tasks) or not all(isinstance(v, float) and math.isfinite(v) for v in line.values()):
            return (f"history[{i}] is {short_repr(line, 40)}, expected a finite loss per task of "
                    f"{first_few(list(tasks))}")
    return None


def _like_fresh(saved: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """``saved`` hyperparameters with the types of ``own`` where JSON changed them (tuples)."""
    return {k: tuple(v) if isinstance(own.get(k), tuple) and isinstance(v, list) else copy.deepcopy(v)
            for k, v in saved.items()}


def restore(checkpoint: Checkpoint, model: nn.Module, engine: Engine, generator: torch.Generator) -> None:
    """Put ``checkpoint`` into a fresh training: ``model``'s weights, ``engine``'s optimizer,
    schedule, balancer and loss history, the batch-order ``generator`` and torch's RNG states.
    Check it with :func:`resume_problem` first."""
    model.load_state_dict(checkpoint.weights)
    index = {name: i for i, (name, _) in enumerate(_parameters(model, engine))}
    own = engine.optimizer.state_dict()["param_groups"]
    optimizer = {  # cloned: the optimizer updates its state in place
        "state": {index[name]: {k: v.clone() for k, v in entry.items()}
                  for name, entry in checkpoint.optimizer.items()},
        "param_groups": [{**_like_fresh(saved, g), "params": g["params"]} for saved, g in zip(checkpoint.groups, own)],
    }
    engine.load_state_dict({"optimizer": optimizer, "schedule": copy.deepcopy(checkpoint.schedule), "scaler": None,
                            "balancer": {k: v.clone() for k, v in checkpoint.balancer.items()},
                            "history": [dict(h) for h in checkpoint.history]})
    generator.set_state(checkpoint.generator.clone())
    torch.set_rng_state(checkpoint.torch_rng.clone())
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if checkpoint.cuda_rng is not None and device.type == "cuda":
        torch.cuda.set_rng_state(checkpoint.cuda_rng.clone(), device)


# -- stacked trainings (mtnas.train.TreeStack) ------------------------------------------------------


def canonical(value: Any) -> str:
    """``value`` (numbers, strings, lists, tuples, mappings) in one canonical text: tuples as lists."""
    return json.dumps(value, sort_keys=True, default=str)


def task_rows(value: torch.Tensor, rows: Sequence[int], size: int, key: str) -> torch.Tensor:
    """A member's entries of a stack's per-task tensor (the first dim one entry per (member, task)
    output; a step count as it is)."""
    if key in SHARED_STATE:
        return value.clone()
    if value.dim() == 0 or value.shape[0] != size:
        raise ValueError(f"the balancer's {key} of shape {tuple(value.shape)} is not one entry per task ({size})")
    return value[list(rows)].clone()


def present_states(entries: Sequence[Mapping[str, torch.Tensor] | None], name: str) -> list[Mapping[str, torch.Tensor]]:
    """Every member's state of one tensor, of the same kinds; a ``ValueError`` when a member lacks it."""
    if any(e is None for e in entries) or any(set(e) != set(entries[0]) for e in entries):  # type: ignore[arg-type]
        raise ValueError(f"the members' checkpoints do not all hold the same state of {name}")
    return list(entries)  # type: ignore[arg-type]


def join_states(entries: Sequence[Mapping[str, torch.Tensor] | None], name: str, *, cat: bool
                ) -> dict[str, torch.Tensor]:
    """The members' states of one stacked tensor as one: per-element state stacked (or, ``cat``,
    per-task vectors concatenated), a step count once (it must agree)."""
    present = present_states(entries, name)
    out: dict[str, torch.Tensor] = {}
    for key in present[0]:
        values = [e[key] for e in present]
        if key in SHARED_STATE or values[0].dim() == 0:
            if any(not torch.equal(v, values[0]) for v in values):
                raise ValueError(f"the members' checkpoints disagree on {name}'s {key}")
            out[key] = values[0].clone()
        else:
            out[key] = torch.cat(values) if cat else torch.stack(values)
    return out


# -- on disk ---------------------------------------------------------------------------------------


def _flat(checkpoint: Checkpoint) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of a checkpoint but its weights, each kind of optimizer state flattened into one
    tensor per dtype, and the index that cuts them back (``[parameter, shape]`` in order)."""
    tensors: dict[str, torch.Tensor] = {}
    parts: dict[str, list[torch.Tensor]] = {}
    index: dict[str, list[list[Any]]] = {}
    for name, entry in checkpoint.optimizer.items():
        for key, value in entry.items():
            flat = f"optimizer/{key}/{str(value.dtype).removeprefix('torch.')}"
            parts.setdefault(flat, []).append(value.reshape(-1))
            index.setdefault(flat, []).append([name, list(value.shape)])
    tensors.update({flat: torch.cat(values) for flat, values in parts.items()})
    tensors.update({f"balancer/{k}": v.contiguous() for k, v in checkpoint.balancer.items()})
    tensors["rng/generator"], tensors["rng/torch"] = checkpoint.generator, checkpoint.torch_rng
    if checkpoint.cuda_rng is not None:
        tensors["rng/cuda"] = checkpoint.cuda_rng
    return tensors, index


def _digest(tensors: Mapping[str, torch.Tensor], state: str) -> str:
    return hashlib.sha256(f"{tensors_sha256(tensors)}|{state}".encode()).hexdigest()


def save_resume_state(path: str | Path, checkpoint: Checkpoint, *, tree_key: str, unit: str) -> None:
    """Write everything of ``checkpoint`` but its weights to ``path`` (a ``.safetensors`` file),
    atomically, bound to ``unit`` (a unit of evidence's key) and ``tree_key``."""
    from safetensors.torch import save

    tensors, index = _flat(checkpoint)
    state = json.dumps({"seed": checkpoint.seed, "epochs": checkpoint.epochs, "epoch": checkpoint.epoch,
                        "groups": list(checkpoint.groups),
                        "schedule": checkpoint.schedule, "history": list(checkpoint.history),
                        "seconds": checkpoint.seconds, "optimizer": index}, sort_keys=True, allow_nan=False)
    metadata = {"format": RESUME_FORMAT, "version": RESUME_VERSION, "unit": unit, "tree_key": tree_key,
                "state": state, "sha256": _digest(tensors, state)}
    atomic_write_bytes(Path(path), save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def load_resume_state(path: str | Path, weights: Mapping[str, torch.Tensor], *, tree_key: str, unit: str
                      ) -> Checkpoint:
    """The checkpoint whose state :func:`save_resume_state` wrote to ``path``, with ``weights``.

    Raises:
        MtnasError: one line naming the file: missing, damaged, not a resume state, another unit's
            or tree's, or its content does not match its checksum.
    """
    path = Path(path)
    tensors, metadata = read_safetensors(path, str(path), "resume-state file")
    if metadata.get("format") != RESUME_FORMAT:
        raise MtnasError(f"{path}: not an mtnas resume state (format {short_repr(metadata.get('format'), 30)}, "
                         f"expected {RESUME_FORMAT!r})")
    if metadata.get("version") != RESUME_VERSION:
        raise MtnasError(f"{path}: resume-state version {short_repr(metadata.get('version'), 20)} is not one this "
                         f"mtnas reads ({RESUME_VERSION})")
    for name, wanted in (("unit", unit), ("tree_key", tree_key)):
        if metadata.get(name) != wanted:
            raise MtnasError(f"{path}: its metadata says {name} {short_repr(metadata.get(name), 24)}, expected "
                             f"{short_repr(wanted, 24)}: the resume state belongs to another (a file put in its place)")
    state_text = metadata.get("state", "")
    if metadata.get("sha256") != _digest(tensors, state_text):
        raise MtnasError(f"{path}: the resume state does not match its checksum: the file was modified or damaged")
    try:
        return _checkpoint(tensors, load_json_text(state_text, str(path)), weights)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise MtnasError(f"{path}: not a sound resume state ({type(exc).__name__}: {exc})") from None


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _checkpoint(tensors: Mapping[str, torch.Tensor], state: Any, weights: Mapping[str, torch.Tensor]) -> Checkpoint:
    """A checkpoint from a resume-state file's tensors and JSON; raises on anything unsound."""
    if not isinstance(state, dict):
        raise TypeError("its state is not a mapping")
    optimizer: dict[str, dict[str, torch.Tensor]] = {}
    for flat, entries in state["optimizer"].items():
        key = flat.split("/")[1]
        values, at = tensors[flat], 0
        for name, shape in entries:
            n = math.prod(shape)
            optimizer.setdefault(name, {})[key] = values[at: at + n].reshape(shape).clone()
            at += n
        if at != values.numel():
            raise ValueError(f"{flat} holds {values.numel()} values, its index {at}")
    groups, schedule, history, seconds = state["groups"], state["schedule"], state["history"], state["seconds"]
    if not (isinstance(groups, list) and all(isinstance(g, dict) for g in groups) and isinstance(schedule, dict)
            and isinstance(history, list) and all(isinstance(h, dict) for h in history)):
        raise TypeError("its groups, schedule or history are not what a training holds")
    if not _number(seconds) or seconds < 0:
        raise ValueError(f"its seconds are {short_repr(seconds, 20)}")
    if not all(_number(v) for h in history for v in h.values()):
        raise ValueError("its history holds a loss that is not a finite number")
    if any(type(state[k]) is not int for k in ("seed", "epochs", "epoch")):
        raise TypeError("its seed or epochs are not whole numbers")
    rng = {k: tensors[f"rng/{k}"] for k in ("generator", "torch", "cuda") if f"rng/{k}" in tensors}
    if any(t.dtype != torch.uint8 or t.dim() != 1 for t in rng.values()):
        raise ValueError("its RNG states are not 1-d uint8 tensors")
    return Checkpoint(
        seed=state["seed"], epochs=state["epochs"], epoch=state["epoch"],
        weights={k: v.clone() for k, v in weights.items()},
        optimizer=optimizer, groups=tuple(groups), schedule=schedule,
        balancer={k.removeprefix("balancer/"): v.clone() for k, v in tensors.items() if k.startswith("balancer/")},
        history=tuple({str(t): float(v) for t, v in h.items()} for h in history),
        generator=rng["generator"].clone(), torch_rng=rng["torch"].clone(),
        cuda_rng=rng["cuda"].clone() if "cuda" in rng else None, seconds=float(seconds),
    )
