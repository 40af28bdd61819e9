"""A retrain checkpoint's training state, checked before any of it is used.

``state.pt`` (read with ``torch.load(weights_only=True)``) holds plain containers and tensors; a
damaged or edited one could still crash torch deep in ``load_state_dict`` or resume a different
run. So it is checked in two steps, each giving one line that names the entry:

- :func:`state_problem`: the structure: format and version, every entry of the type it must
  have, a config of this tree with a seed, epochs, precision and init mtnas accepts;
- :func:`content_problem`: the content, against the state the resumed run creates: RNG states
  of the same length, the optimizer's parameter groups with the same parameters and
  hyperparameters of the same types (finite numbers of float32's range), per-parameter state of
  each parameter's shape, the same schedule, scaler and balancer entries, and one epoch record
  per finished epoch with this space's tasks and metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mtnas.core import FLOAT32_MAX, MAX_SEED, MtnasError, first_few, short_repr, short_text
from mtnas.space import SearchSpace
from mtnas.train._device import PRECISIONS
from mtnas.tree import BranchingTree

__all__ = ["INITS", "STATE_FORMAT", "content_problem", "damaged_state", "like", "state_problem"]

STATE_FORMAT = "mtnas-retrain-state"
INITS = ("scratch", "inherited")


def damaged_state(found: Path, problem: str) -> MtnasError:
    """The one-line error for a checkpoint folder ``found`` whose ``state.pt`` has ``problem``."""
    return MtnasError(f"{found / 'state.pt'}: not a valid mtnas retrain state ({problem}); it was damaged or "
                      "edited: start over in this folder with --restart, or a fresh run in another folder (-o)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool), within float32's range."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and abs(value) <= FLOAT32_MAX)


def like(given: Any, fresh: Any, where: str) -> str | None:
    """What makes ``given`` (read from a file) unlike ``fresh`` (what this run creates), or None.

    Mappings have the same keys, sequences the same length, tensors the same shape and kind of
    dtype, numbers are finite numbers of float32's range, and other values have the type of
    ``fresh``'s (``None`` stands for "unset" and also admits a bool, as in an optimizer's
    ``foreach`` flag).
    """
    if isinstance(fresh, Mapping):
        if not isinstance(given, Mapping) or set(given) != set(fresh):
            extra = sorted(map(str, set(given) - set(fresh))) if isinstance(given, Mapping) else []
            missing = sorted(map(str, set(fresh) - set(given))) if isinstance(given, Mapping) else []
            detail = (f"missing {first_few(missing)}" if missing else f"unexpected {first_few(extra)}") if (
                missing or extra) else f"{short_repr(given, 30)}"
            return f"{where} is not this run's mapping ({detail})"
        return next((p for k in fresh if (p := like(given[k], fresh[k], f"{where}.{k}")) is not None), None)
    if isinstance(fresh, (list, tuple)):
        if not isinstance(given, (list, tuple)) or len(given) != len(fresh):
            return f"{where} is {short_repr(given, 30)}, expected {len(fresh)} item(s)"
        return next((p for i, (g, f) in enumerate(zip(given, fresh)) if (p := like(g, f, f"{where}[{i}]")) is not None),
                    None)
    if isinstance(fresh, torch.Tensor):
        if not isinstance(given, torch.Tensor) or given.shape != fresh.shape or (
                given.dtype.is_floating_point != fresh.dtype.is_floating_point):
            return f"{where} is {short_repr(given, 30)}, expected a tensor of shape {tuple(fresh.shape)}"
        return None
    if isinstance(fresh, bool) or fresh is None:
        ok = isinstance(given, bool) if isinstance(fresh, bool) else given is None or isinstance(given, bool)
        return None if ok else f"{where} is {short_repr(given, 30)}, expected {short_repr(fresh, 20)}"
    if isinstance(fresh, (int, float)):
        return None if _is_number(given) else f"{where} is {short_repr(given, 30)}, expected a finite number"
    if not isinstance(given, type(fresh)):
        return f"{where} is {short_repr(given, 30)}, expected a {type(fresh).__name__}"
    return None


def _is_rng_state(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


#: What each entry of a retrain state (``_Run.state``) must be: a check, and the words for it.
_STATE_ENTRIES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "version": (lambda v: _is_int(v) and v == 1, "1"),
    "epoch": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "optimizer": (lambda v: isinstance(v, dict) and isinstance(v.get("state"), dict)
                  and isinstance(v.get("param_groups"), list), "an optimizer state ('state' and 'param_groups')"),
    "schedule": (lambda v: isinstance(v, dict), "a mapping"),
    "scaler": (lambda v: v is None or isinstance(v, dict), "null or a mapping"),
    "balancer": (lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()),
                 "a mapping of tensors"),
    "generator": (_is_rng_state, "an RNG state (a 1-d uint8 tensor)"),
    "torch_rng": (_is_rng_state, "an RNG state (a 1-d uint8 tensor)"),
    "cuda_rng": (lambda v: v is None or (isinstance(v, list) and all(_is_rng_state(t) for t in v)),
                 "null or a list of RNG states"),
    "history": (lambda v: isinstance(v, list) and all(
        isinstance(h, dict) and isinstance(h.get("train_loss"), dict) for h in v), "a list of epoch records"),
}
_CONFIG_ENTRIES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _is_int(v) and 0 <= v <= MAX_SEED, f"an integer in 0..{MAX_SEED}"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "precision": (lambda v: isinstance(v, str) and v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    "init": (lambda v: isinstance(v, str) and v in INITS, f"one of {', '.join(INITS)}"),
    "world_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "tree_key": (lambda v: isinstance(v, str), "a string"),
}


def state_problem(state: Mapping[str, Any], tree: BranchingTree) -> str | None:
    """What is wrong with the structure of a retrain state read from disk: its format, entries and
    config (None: it can be read; :func:`content_problem` checks the content)."""
    if state.get("format") != STATE_FORMAT:
        return f"format is {short_repr(state.get('format'))}, expected {STATE_FORMAT!r}"
    config = state.get("config")
    if not isinstance(config, dict):
        return f"config is {short_repr(config)}, expected a mapping"
    for where, entries in ((state, _STATE_ENTRIES), (config, _CONFIG_ENTRIES)):
        prefix = "config." if where is config else ""
        for key, (ok, expected) in entries.items():
            if key not in where:
                return f"{prefix}{key} is missing"
            if not ok(where[key]):
                return f"{prefix}{key} is {short_repr(where[key], 40)}, expected {expected}"
    if state["epoch"] > config["epochs"]:
        return f"epoch is {state['epoch']}, more than the run's {config['epochs']} epochs"
    if len(state["history"]) != state["epoch"]:
        return f"history has {len(state['history'])} epoch records for epoch {state['epoch']}"
    if config["tree_key"] != tree.key:
        return f"config.tree_key is {short_repr(config['tree_key'], 20)}, the architecture's tree is {tree.key}"
    return None



def content_problem(state: Mapping[str, Any], fresh: Mapping[str, Any], live_groups: Sequence[Mapping[str, Any]],
                    space: SearchSpace) -> str | None:
    """What keeps ``state`` (read from a checkpoint) from resuming a run, checked against
    ``fresh``, the state that run creates (``live_groups``: its optimizer's parameter groups, the
    tensors themselves; ``space``: its tasks and metrics): RNG states of the same length, optimizer groups with the
    same parameters and hyperparameter types, per-parameter optimizer state of the
    parameters' shapes, the same schedule and balancer entries, and epoch records of this
    space's tasks and metrics. None: it fits."""
    for key in ("generator", "torch_rng"):
        if state[key].numel() != fresh[key].numel():
            return f"{key} holds {state[key].numel()} bytes, this run's RNG state {fresh[key].numel()}"
    if fresh["cuda_rng"] is not None and state["cuda_rng"] is not None:
        sizes = [t.numel() for t in fresh["cuda_rng"]]
        if any(t.numel() != n for t, n in zip(state["cuda_rng"], sizes)):
            return f"cuda_rng holds states of another size than this machine's ({sizes[0]} bytes)"
    problem = _optimizer_problem(state["optimizer"], fresh["optimizer"], live_groups)
    if problem is not None:
        return problem
    for key in ("schedule", "scaler", "balancer"):
        problem = like(state[key], fresh[key], key)
        if problem is not None:
            return problem
    for i, line in enumerate(state["history"]):
        problem = _history_problem(line, i, space)
        if problem is not None:
            return problem
    return None

def _optimizer_problem(given: Mapping[str, Any], fresh: Mapping[str, Any],
                       live_groups: Sequence[Mapping[str, Any]]) -> str | None:
    groups = given["param_groups"]
    if len(groups) != len(fresh["param_groups"]):
        return f"optimizer has {len(groups)} parameter group(s), this run's optimizer {len(fresh['param_groups'])}"
    shapes = {}
    for g, (group, own, live) in enumerate(zip(groups, fresh["param_groups"], live_groups)):
        if not isinstance(group, dict) or group.get("params") != own["params"]:
            return (f"optimizer.param_groups[{g}] does not list this run's {len(own['params'])} parameters "
                    "(another model or optimizer)")
        problem = like({k: v for k, v in group.items() if k != "params"},
                       {k: v for k, v in own.items() if k != "params"}, f"optimizer.param_groups[{g}]")
        if problem is not None:
            return problem
        shapes.update({i: tuple(p.shape) for i, p in zip(own["params"], live["params"])})
    for pid, entry in given["state"].items():
        where = f"optimizer.state[{short_text(pid, 20)}]"
        if pid not in shapes or not isinstance(entry, dict):
            return f"{where} is not the state of one of this run's parameters"
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                if not value.dtype.is_floating_point:
                    return f"{where}.{short_text(name, 20)} is a {value.dtype} tensor, expected floating point"
                if value.dim() > 0 and tuple(value.shape) != shapes[pid]:
                    return (f"{where}.{short_text(name, 20)} has shape {tuple(value.shape)}, its parameter "
                            f"{shapes[pid]}")
            elif not _is_number(value):
                return f"{where}.{short_text(name, 20)} is {short_repr(value, 30)}, expected a tensor or a number"
    return None

def _history_problem(line: Mapping[str, Any], i: int, space: SearchSpace) -> str | None:
    where = f"history[{i}]"
    numbers = ("train_loss_total", "lr", "seconds", "samples_per_s")
    if line.get("epoch") != i + 1 or isinstance(line.get("epoch"), bool):
        return f"{where}.epoch is {short_repr(line.get('epoch'), 20)}, expected {i + 1}"
    for key in numbers:
        if not _is_number(line.get(key)):
            return f"{where}.{key} is {short_repr(line.get(key), 30)}, expected a finite number"
    losses = line["train_loss"]
    if set(losses) != set(space.task_names) or not all(_is_number(v) for v in losses.values()):
        return f"{where}.train_loss is {short_repr(losses, 40)}, expected a finite loss per task of this space"
    val = line.get("val")
    expected = {t.name: set(t.metrics) for t in space.tasks}
    if not isinstance(val, dict) or set(val) != set(expected) or any(
        not isinstance(val[t], dict) or set(val[t]) != m or not all(isinstance(x, (int, float)) and
                                                                    not isinstance(x, bool) for x in val[t].values())
        for t, m in expected.items()
    ):
        return f"{where}.val is {short_repr(val, 40)}, expected this space's metrics per task"
    return None
