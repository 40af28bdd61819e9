"""The T single-task networks of delta-m trained as one model: stacked weights under ``torch.vmap``.

Each single-task baseline is ``BranchedNet.from_space(all_shared((task,)), one-task space)`` built
after ``torch.manual_seed(seed)`` and trained by ``train_model`` with the same seed, so all T runs
see the same batches in the same order under the same schedule. Their parameters are disjoint,
hence ``d(sum_s L_s) / d theta_t = d L_t / d theta_t``: one backward pass of the summed loss gives
every network the gradient it gets alone, and the registered optimizers (Adam, AdamW, SGD with
momentum) are element-wise, so one of them over stacked (T, ...) tensors updates each slice as T
separate ones would. The T networks therefore train as one model:

- ``torch.func.stack_module_state`` stacks the T backbones' weights and buffers along a new dim 0;
  ``torch.vmap`` of ``torch.func.functional_call`` runs them on the one shared batch (the first
  conv becomes one conv of T x C output channels, the next ones grouped convs);
- BatchNorm keeps each network's running statistics as stacked buffers (T, C), updated in place
  under vmap, so train-mode batch statistics and eval-mode running statistics stay per network
  (``torch.func.replace_all_batch_norm_modules_`` would drop the running statistics and change the
  eval results);
- heads of one structure (the 40 binary heads of ``synth_attributes``) run stacked the same way,
  the others one by one (a 10-class head and a 2-class head cannot be stacked).

The result equals training each network alone up to floating-point summation order (stacked and
grouped kernels add in another order: about 1e-7 relative on the losses after a few epochs,
metrics equal on the tiny spaces of the tests). The stacking pattern is the
one of PyTorch's "Model ensembling" tutorial (torch.func).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from mtnas.data import DatasetBundle
from mtnas.model import BranchedNet, tree_cost
from mtnas.space import SearchSpace
from mtnas.train._engine import train_model
from mtnas.train._fixed_tree import TreeResult, train_tree
from mtnas.tree import BranchingTree

__all__ = ["SingleTaskStack", "single_task_space", "train_single_tasks"]


def single_task_space(space: SearchSpace, task: str) -> SearchSpace:
    """The one-task space of ``task``'s baseline network.

    A single task has nothing to balance: it trains on its plain loss whatever the space's
    ``training.balancing`` (uncertainty weighting would only rescale its learning rate).
    """
    return replace(space, tasks=(space.task(task),), training=replace(space.training, balancing="equal"))


def _single_net(space: SearchSpace, task: str, seed: int) -> BranchedNet:
    """Task ``task``'s baseline network with the initial weights it gets when trained alone."""
    torch.manual_seed(seed)
    return BranchedNet.from_space(BranchingTree.all_shared((task,), space.num_layers), single_task_space(space, task))


def _structure(module: nn.Module) -> tuple:
    """What must agree for modules to stack: classes, tensor shapes and plain attributes."""
    parts: list[Any] = []
    for name, sub in module.named_modules():
        plain = {k: repr(v) for k, v in vars(sub).items() if not k.startswith("_") and k != "training"}
        parts.append((name, type(sub), tuple(sorted(plain.items()))))
    parts += [(n, tuple(t.shape), t.dtype) for n, t in module.named_parameters()]
    parts += [(n, tuple(t.shape), t.dtype) for n, t in module.named_buffers()]
    return tuple(parts)


class _Stacked(nn.Module):
    """G modules of one structure as stacked tensors, run under ``torch.vmap``.

    Parameters and buffers of the G modules become (G, ...) tensors registered here (``p{i}`` and
    ``b{i}``, as ``nn.Module`` names cannot hold dots); ``forward`` calls a weightless copy of the
    first module (on the meta device) with slice g of every tensor for member g.
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        params, buffers = stack_module_state(list(modules))
        self._param_names, self._buffer_names = list(params), list(buffers)
        for i, name in enumerate(self._param_names):
            self.register_parameter(f"p{i}", nn.Parameter(params[name].detach().clone()))
        for i, name in enumerate(self._buffer_names):
            self.register_buffer(f"b{i}", buffers[name].clone())
        # not a submodule: its (meta) tensors must not reach parameters(), .to() or state_dict()
        self.__dict__["_base"] = copy.deepcopy(modules[0]).to("meta")
        self.size = len(modules)

    def train(self, mode: bool = True) -> _Stacked:
        super().train(mode)
        self._base.train(mode)  # functional_call follows the base's mode (BatchNorm statistics)
        return self

    def tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The stacked (G, ...) parameters and buffers, by the members' own names."""
        params = {n: getattr(self, f"p{i}") for i, n in enumerate(self._param_names)}
        buffers = {n: getattr(self, f"b{i}") for i, n in enumerate(self._buffer_names)}
        return params, buffers

    def forward(self, x: torch.Tensor, *, shared_input: bool) -> torch.Tensor:
        """``x``: (B, ...) fed to every member when ``shared_input``, else (G, B, ...) one slice each.
        Returns (G, B, ...) the members' outputs."""
        params, buffers = self.tensors()

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self._base, (p, b), (x,))

        return torch.vmap(one, in_dims=(0, 0, None if shared_input else 0))(params, buffers, x)

    def member_state(self, g: int) -> dict[str, torch.Tensor]:
        """Member ``g``'s state dict (its slice of every tensor), by its own names."""
        params, buffers = self.tensors()
        return {n: t[g].detach() for n, t in {**params, **buffers}.items()}


class SingleTaskStack(nn.Module):
    """The single-task baseline network of every task of a resolved space, as one module.

    ``forward`` maps inputs (B, ...) to ``{task: output}`` like a ``BranchedNet`` of all the tasks
    whose task t reads only its own backbone: the T backbones (identical architecture, each with
    its own weights) run stacked, then each task's head (stacked with the heads of the same shape).
    Train it with ``train_model`` on the space with ``balancing="equal"``
    (``single_task_space``'s rule): the summed loss trains each network as alone.
    """

    def __init__(self, tasks: Sequence[str], nets: Sequence[BranchedNet]) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.num_layers = nets[0].tree.num_layers
        self.backbone = _Stacked([nn.Sequential(*(layer[0] for layer in net.layers)) for net in nets])
        groups: dict[tuple, list[int]] = {}
        for i, net in enumerate(nets):
            groups.setdefault(_structure(net.heads[self.tasks[i]]), []).append(i)
        #: members of each head group, as indices into ``tasks``
        self.head_groups = tuple(tuple(g) for g in groups.values())
        self.heads = nn.ModuleList(
            _Stacked([nets[i].heads[self.tasks[i]] for i in g]) if len(g) > 1 else nets[g[0]].heads[self.tasks[g[0]]]
            for g in self.head_groups
        )

    @classmethod
    def from_space(cls, space: SearchSpace, *, seed: int) -> SingleTaskStack:
        """Every task's baseline network, each built under ``torch.manual_seed(seed)`` as when trained
        alone (same initial weights, pretrained backbone weights included), then stacked."""
        return cls(space.task_names, [_single_net(space, t, seed) for t in space.task_names])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # (B, ...) -> {task: (B, ...)}
        feats = self.backbone(x, shared_input=True)  # (T, B, C, H, W) or (T, B, F)
        out: dict[str, torch.Tensor] = {}
        for members, head in zip(self.head_groups, self.heads):
            if isinstance(head, _Stacked):
                index = torch.tensor(members, device=feats.device)
                ys = head(feats.index_select(0, index), shared_input=False)  # (G, B, ...)
                out.update({self.tasks[i]: y for i, y in zip(members, ys.unbind(0))})
            else:
                out[self.tasks[members[0]]] = head(feats[members[0]])
        return {t: out[t] for t in self.tasks}

    def state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each task's network as a ``BranchedNet`` state dict (``layers.{l}.0.*``, ``heads.{task}.*``)."""
        states: dict[str, dict[str, torch.Tensor]] = {}
        for t, task in enumerate(self.tasks):
            backbone = self.backbone.member_state(t)
            states[task] = {f"layers.{k.split('.', 1)[0]}.0.{k.split('.', 1)[1]}": v for k, v in backbone.items()}
        for members, head in zip(self.head_groups, self.heads):
            for g, i in enumerate(members):
                state = head.member_state(g) if isinstance(head, _Stacked) else head.state_dict()
                states[self.tasks[i]].update({f"heads.{self.tasks[i]}.{k}": v.detach() for k, v in state.items()})
        return states


def _check_stackable(stack: SingleTaskStack, inputs: torch.Tensor) -> str | None:
    """Why ``stack`` cannot run under vmap (e.g. a user backbone with dropout or ``.item()``),
    or None. Runs one train-mode forward on a copy, so no running statistic moves."""
    try:
        with torch.no_grad():
            copy.deepcopy(stack).train()(inputs)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _loop(space: SearchSpace, bundle: DatasetBundle, device: torch.device, seed: int,
          epochs: int | None, progress: bool) -> dict[str, TreeResult]:
    return {
        task: train_tree(BranchingTree.all_shared((task,), space.num_layers), single_task_space(space, task), bundle,
                         device=device, seed=seed, epochs=epochs, progress=progress, desc=f"single-task {task}")
        for task in space.task_names
    }


def train_single_tasks(
    space: SearchSpace,
    bundle: DatasetBundle,
    *,
    device: torch.device,
    seed: int,
    epochs: int | None = None,
    batched: bool = True,
    progress: bool = False,
) -> dict[str, TreeResult]:
    """Train every task's single-task network (``single_task_space``, seed ``seed``) and evaluate it.

    ``batched`` trains the T networks as one :class:`SingleTaskStack` (falling back, with a
    warning, to one at a time when the backbone cannot run under ``torch.vmap``); otherwise one
    ``train_tree`` per task. Both give the same metrics up to float summation order. A batched
    result's ``seconds`` is its share (1/T) of the batched training time, so they sum to it.
    """
    if not batched or len(space.tasks) == 1:
        return _loop(space, bundle, device, seed, epochs, progress)
    stack = SingleTaskStack.from_space(space, seed=seed)
    why = _check_stackable(stack, bundle.train.inputs[: min(len(bundle.train), 8)])
    if why is not None:
        warnings.warn(f"single-task networks trained one at a time: the backbone does not run under "
                      f"torch.vmap ({why})", RuntimeWarning, stacklevel=2)
        return _loop(space, bundle, device, seed, epochs, progress)
    equal = replace(space, training=replace(space.training, balancing="equal"))
    result = train_model(stack, equal, bundle, device=device, seed=seed, epochs=epochs, progress=progress,
                         desc=f"{len(space.tasks)} single-task networks")
    share = result.seconds / len(space.tasks)
    out = {}
    for task in space.task_names:
        tree = BranchingTree.all_shared((task,), space.num_layers)
        out[task] = TreeResult(tree, tree_cost(tree, single_task_space(space, task)), {task: result.val[task]},
                               {task: result.test[task]}, share)
    return out

