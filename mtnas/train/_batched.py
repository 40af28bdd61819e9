"""Networks that share no weight trained as one model: stacked weights under ``torch.vmap``.

The T single-task networks of delta-m, every pair's network of the trained search and the
candidate trees of one wiring it compares (``TreeStack``, ``train_trees``) train this way. What
follows is said of the single-task networks; it holds for any such set of trees.

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

A stacked training's checkpoint (``mtnas.train.Checkpoint``) slices into one per member
(``TreeStack.member_checkpoints``): each parameter's slice of the weights and of the optimizer's
per-element state (Adam's moments are (M, ...) like the stacked parameter; its step count is
shared), the member's entries of a per-task balancer state and of the loss history; and members'
checkpoints stack back (``TreeStack.stack_checkpoints``). So a tree's checkpoint resumes alone or
stacked, whichever way it was written.

The result equals training each network alone up to floating-point summation order (stacked and
grouped kernels add in another order: about 1e-7 relative on the losses after a few epochs,
metrics equal on the tiny spaces of the tests). The stacking pattern is the
one of PyTorch's "Model ensembling" tutorial (torch.func).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, overload

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from mtnas.data import DatasetBundle, TaskData
from mtnas.model import BranchedNet, inherit_state, tree_cost
from mtnas.nn import shared_parameters
from mtnas.space import SearchSpace
from mtnas.train._engine import Engine, train_model
from mtnas.train._fixed_tree import TreeResult, train_tree
from mtnas.train._resume import (
    BALANCER_PREFIX,
    SHARED_STATE,
    Checkpoint,
    canonical,
    join_states,
    present_states,
    resume_problem,
    task_rows,
)
from mtnas.train._trackers import TrackedRun
from mtnas.tree import BranchingTree

__all__ = ["SingleTaskStack", "TreeStack", "single_task_space", "subset_space", "train_single_tasks",
           "train_subset_networks", "train_trees", "tree_resume_problem"]


def single_task_space(space: SearchSpace, task: str) -> SearchSpace:
    """The one-task space of ``task``'s baseline network.

    A single task has nothing to balance: it trains on its plain loss whatever the space's
    ``training.balancing`` (uncertainty weighting would only rescale its learning rate).
    """
    return replace(space, tasks=(space.task(task),), training=replace(space.training, balancing="equal"))


def subset_space(space: SearchSpace, tasks: Sequence[str]) -> SearchSpace:
    """The space of a network serving ``tasks`` alone (one task: ``single_task_space``)."""
    if len(tasks) == 1:
        return single_task_space(space, tasks[0])
    return replace(space, tasks=tuple(space.task(t) for t in tasks))


def _single_net(space: SearchSpace, task: str, seed: int) -> BranchedNet:
    """Task ``task``'s baseline network with the initial weights it gets when trained alone."""
    return _net(space, BranchingTree.all_shared((task,), space.num_layers), seed)


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


def _wiring(net: BranchedNet) -> tuple[tuple[int, ...], ...]:
    """Which node of the layer below feeds each node of every layer: what must agree for trees to stack."""
    return tuple(tuple(p) for p in net._parents)


class TreeStack(nn.Module):
    """M trees of one wiring (the same nodes per layer, fed by the same parents), each with its own
    weights and its own tasks, as one module: every node runs its M copies stacked under
    ``torch.vmap``, then each (member, task) head, stacked with the heads of the same structure.

    Trees of one wiring: all-shared networks of any task subsets (the single-task baselines, every
    pair of tasks), or trees that split once at the same layer into the same number of groups,
    whatever their groups. ``forward`` maps inputs (B, ...) to ``{key: output}``, one key per
    (member, task) (``keys[m][i]`` for task ``trees[m].tasks[i]``). Train it with ``train_model``
    on the space whose tasks are those keys (``_member_problem``) and a balancing that weighs each
    task on its own (``STACKABLE_BALANCING``): the members share no parameter, so the summed loss
    trains each as alone.
    """

    def __init__(self, nets: Sequence[BranchedNet], keys: Sequence[Sequence[str]]) -> None:
        super().__init__()
        wiring = _wiring(nets[0])
        if any(_wiring(net) != wiring for net in nets):
            raise ValueError("trees of different wirings cannot stack")
        self.wiring = wiring
        self.trees = tuple(net.tree for net in nets)
        self.members = tuple(tree.tasks for tree in self.trees)
        #: (member, task, output key, last-layer node) of every head, in order
        self.outputs = tuple((m, task, key, net._head_node[task]) for m, (net, ks) in enumerate(zip(nets, keys))
                             for task, key in zip(net.tree.tasks, ks))
        self.nodes = nn.ModuleList(
            nn.ModuleList(_Stacked([net.layers[layer][j] for net in nets]) for j in range(len(parents)))
            for layer, parents in enumerate(wiring)
        )
        groups: dict[tuple, list[int]] = {}
        for i, (m, task, _, _) in enumerate(self.outputs):
            groups.setdefault(_structure(nets[m].heads[task]), []).append(i)
        #: the heads of each stacked head group, as indices into ``outputs``
        self.head_groups = tuple(tuple(g) for g in groups.values())
        self.heads = nn.ModuleList(
            _Stacked([nets[self.outputs[i][0]].heads[self.outputs[i][1]] for i in g]) if len(g) > 1
            else nets[self.outputs[g[0]][0]].heads[self.outputs[g[0]][1]]
            for g in self.head_groups
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # (B, ...) -> {key: (B, ...)}
        feats: list[torch.Tensor] = []
        for layer, nodes in enumerate(self.nodes):
            if layer == 0:
                feats = [node(x, shared_input=True) for node in nodes]  # (M, B, ...) each
            else:
                feats = [node(feats[p], shared_input=False) for node, p in zip(nodes, self.wiring[layer])]
        last = torch.stack(feats)  # (K_last, M, B, ...)
        out: dict[str, torch.Tensor] = {}
        for group, head in zip(self.head_groups, self.heads):
            nodes = torch.tensor([self.outputs[i][3] for i in group], device=last.device)
            members = torch.tensor([self.outputs[i][0] for i in group], device=last.device)
            inputs = last[nodes, members]  # (G, B, ...)
            if isinstance(head, _Stacked):
                out.update({self.outputs[i][2]: y for i, y in zip(group, head(inputs, shared_input=False).unbind(0))})
            else:
                out[self.outputs[group[0]][2]] = head(inputs[0])
        return {key: out[key] for _, _, key, _ in self.outputs}

    def _slots(self) -> dict[str, list[tuple[int, int | None, str]]]:
        """Where each tensor of the stack's state dict belongs, in the order of its slices: (member,
        its slice along dim 0 or None for the whole tensor, its name in the member's ``BranchedNet``)."""
        slots: dict[str, list[tuple[int, int | None, str]]] = {}

        def stacked(prefix: str, module: _Stacked, places: Sequence[tuple[int, str]]) -> None:
            for kind, names in (("p", module._param_names), ("b", module._buffer_names)):
                for i, name in enumerate(names):
                    slots[f"{prefix}.{kind}{i}"] = [(m, g, f"{own}.{name}") for g, (m, own) in enumerate(places)]

        for layer, nodes in enumerate(self.nodes):
            for j, node in enumerate(nodes):
                stacked(f"nodes.{layer}.{j}", node, [(m, f"layers.{layer}.{j}") for m in range(len(self.members))])
        for h, (group, head) in enumerate(zip(self.head_groups, self.heads)):
            places = [(self.outputs[i][0], f"heads.{self.outputs[i][1]}") for i in group]
            if isinstance(head, _Stacked):
                stacked(f"heads.{h}", head, places)
            else:
                ((m, own),) = places
                slots.update({f"heads.{h}.{name}": [(m, None, f"{own}.{name}")] for name in head.state_dict()})
        return slots

    def _split(self, tensors: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Each member's part of the stack's ``tensors`` (a state dict), by the member's names."""
        states: list[dict[str, torch.Tensor]] = [{} for _ in self.members]
        for name, places in self._slots().items():
            for m, g, own in places:
                states[m][own] = tensors[name][g] if g is not None else tensors[name]
        return states

    def _rows(self) -> list[list[int]]:
        """Each member's outputs (indices into ``outputs``), in the order of its tree's tasks."""
        return [[i for i, out in enumerate(self.outputs) if out[0] == m] for m in range(len(self.members))]

    def member_states(self) -> list[dict[str, torch.Tensor]]:
        """Each member as a ``BranchedNet`` state dict (``layers.{l}.{j}.*``, ``heads.{task}.*``)."""
        return self._split(self.state_dict())

    def member_checkpoints(self, checkpoint: Checkpoint) -> list[Checkpoint]:
        """Each member's checkpoint out of the stack's (trained on ``_member_problem``'s tasks): its
        weights, its slice of every parameter's optimizer state (``SHARED_STATE`` as it is), its
        tasks' entries of the balancer's per-task state and of the loss history; what a member
        trained alone would hold. The RNG states and seconds are the stack's: set each member's."""
        slots, rows, size = self._slots(), self._rows(), len(self.outputs)
        optimizer: list[dict[str, dict[str, torch.Tensor]]] = [{} for _ in self.members]
        for name, entry in checkpoint.optimizer.items():
            if name.startswith(BALANCER_PREFIX):
                for m, own in enumerate(rows):
                    optimizer[m][name] = {k: task_rows(v, own, size, k) for k, v in entry.items()}
                continue
            for m, g, own_name in slots[name]:
                optimizer[m][own_name] = {k: (v if k in SHARED_STATE or g is None else v[g]).clone()
                                          for k, v in entry.items()}
        return [
            replace(checkpoint, weights={k: v.clone() for k, v in weights.items()}, optimizer=optimizer[m],
                    balancer={k: task_rows(v, rows[m], size, k) for k, v in checkpoint.balancer.items()},
                    history=tuple({self.outputs[i][1]: h[self.outputs[i][2]] for i in rows[m]}
                                  for h in checkpoint.history))
            for m, weights in enumerate(self._split(checkpoint.weights))
        ]

    def stack_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> Checkpoint:
        """The stack's checkpoint from one checkpoint per member (of its tree trained alone, or
        sliced out of a stack by :meth:`member_checkpoints`). Raises ``ValueError`` when they are
        not of one training's stop (other epochs, batch order, schedule, learning rate, step) or
        do not hold the members' tensors."""
        if len(checkpoints) != len(self.members):
            raise ValueError(f"{len(checkpoints)} checkpoints for a stack of {len(self.members)} trees")
        first = checkpoints[0]
        for c in checkpoints[1:]:
            if (c.epochs, c.epoch) != (first.epochs, first.epoch):
                raise ValueError(f"checkpoints after epoch {c.epoch} of {c.epochs} and {first.epoch} of {first.epochs}")
            if c.seed != first.seed or not torch.equal(c.generator, first.generator):
                raise ValueError("checkpoints of other batch orders (another seed)")
            if canonical(c.groups) != canonical(first.groups) or canonical(c.schedule) != canonical(first.schedule):
                raise ValueError("checkpoints of other optimizer settings or schedules")
        try:
            return self._stacked(checkpoints)
        except (KeyError, RuntimeError) as exc:  # a member's tensor missing, or of another shape
            raise ValueError(f"the checkpoints do not hold the members' tensors ({type(exc).__name__}: {exc})"
                             ) from None

    def _stacked(self, checkpoints: Sequence[Checkpoint]) -> Checkpoint:
        slots, parts = self._slots(), [c.optimizer for c in checkpoints]
        weights = {name: torch.stack([checkpoints[m].weights[own] for m, _, own in places])
                   if places[0][1] is not None else checkpoints[places[0][0]].weights[places[0][2]].clone()
                   for name, places in slots.items()}
        optimizer: dict[str, dict[str, torch.Tensor]] = {}
        for name, _ in self.named_parameters():
            places = slots[name]
            entries = [parts[m].get(own) for m, _, own in places]
            if any(e is not None for e in entries):
                optimizer[name] = join_states(entries, name, cat=False) if places[0][1] is not None else {
                    k: v.clone() for k, v in present_states(entries, name)[0].items()}
        for name in sorted({n for p in parts for n in p if n.startswith(BALANCER_PREFIX)}):
            optimizer[name] = join_states([p.get(name) for p in parts], name, cat=True)
        balancer = join_states([c.balancer for c in checkpoints], "the balancer", cat=True)
        history = tuple({key: checkpoints[m].history[e][task] for m, task, key, _ in self.outputs}
                        for e in range(checkpoints[0].epoch))
        return replace(checkpoints[0], weights=weights, optimizer=optimizer, balancer=balancer, history=history,
                       seconds=sum(c.seconds for c in checkpoints))


class SingleTaskStack(TreeStack):
    """The single-task baseline network of every task of a resolved space, as one module.

    ``forward`` maps inputs (B, ...) to ``{task: output}`` like a ``BranchedNet`` of all the tasks
    whose task t reads only its own backbone (a :class:`TreeStack` of one-task members).
    Train it with ``train_model`` on the space with ``balancing="equal"``
    (``single_task_space``'s rule): the summed loss trains each network as alone.
    """

    def __init__(self, tasks: Sequence[str], nets: Sequence[BranchedNet]) -> None:
        super().__init__(nets, [(t,) for t in tasks])
        self.tasks = tuple(tasks)

    @classmethod
    def from_space(cls, space: SearchSpace, *, seed: int) -> SingleTaskStack:
        """Every task's baseline network, each built under ``torch.manual_seed(seed)`` as when trained
        alone (same initial weights, pretrained backbone weights included), then stacked."""
        return cls(space.task_names, [_single_net(space, t, seed) for t in space.task_names])

    def state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each task's network as a ``BranchedNet`` state dict (``layers.{l}.0.*``, ``heads.{task}.*``)."""
        return dict(zip(self.tasks, self.member_states()))


def _check_stackable(stack: TreeStack, inputs: torch.Tensor) -> str | None:
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
                         desc=f"{len(space.tasks)} single-task networks",
                         track=[TrackedRun.of_tree(BranchingTree.all_shared((t,), space.num_layers), {t: t})
                                for t in space.task_names])
    share = result.seconds / len(space.tasks)
    out = {}
    for task in space.task_names:
        tree = BranchingTree.all_shared((task,), space.num_layers)
        out[task] = TreeResult(tree, tree_cost(tree, single_task_space(space, task)), {task: result.val[task]},
                               {task: result.test[task]}, share)
    return out


#: Fewer trees of one wiring than this train one at a time (a small stack gains nothing under vmap).
MIN_STACK = 4
#: Loss balancings that weigh each task on its own (a sum of per-task terms, each with its own
#: weights), so a stack's summed loss trains every member as its own balancing would. DWA's
#: softmax across tasks and PCGrad's projections would couple the members.
STACKABLE_BALANCING = ("equal", "uncertainty")


def _member_problem(space: SearchSpace, bundle: DatasetBundle, outputs: Sequence[tuple[int, str, str, int]]
                    ) -> tuple[SearchSpace, DatasetBundle]:
    """The space and data of a stack's heads: one task per (member, task) key, the targets shared."""
    tasks = tuple(replace(space.task(task), name=key) for _, task, key, _ in outputs)
    stacked = replace(space, tasks=tasks)  # a stackable balancing weighs each key as its tree would

    def split(data: TaskData) -> TaskData:
        return TaskData(data.inputs, {key: data.targets[task] for _, task, key, _ in outputs},
                        {key: data.masks[task] for _, task, key, _ in outputs if task in data.masks})

    infos = tuple(replace(bundle.task(task), name=key) for _, task, key, _ in outputs)
    return stacked, DatasetBundle(split(bundle.train), split(bundle.val), split(bundle.test), tasks=infos)


def _tree_space(space: SearchSpace, tree: BranchingTree) -> SearchSpace:
    """The space a tree over some of the space's tasks trains in (the space itself for all of them)."""
    return space if tree.tasks == space.task_names else subset_space(space, tree.tasks)


#: A trained tree and its weights (a ``BranchedNet`` state dict) that finer trees start from.
Start = tuple[BranchingTree, Mapping[str, torch.Tensor]]


def _net(space: SearchSpace, tree: BranchingTree, seed: int, start: Start | None = None) -> BranchedNet:
    """``tree``'s network with the initial weights it gets when trained alone: fresh (seeded), or
    inherited from ``start``, a coarser tree's trained weights (``mtnas.model.inherit_state``)."""
    torch.manual_seed(seed)
    net = BranchedNet.from_space(tree, _tree_space(space, tree))
    if start is not None:
        net.load_state_dict(inherit_state(start[0], start[1], tree))
    return net


@overload
def train_trees(space: SearchSpace, bundle: DatasetBundle, trees: Sequence[BranchingTree], *, device: torch.device,
                seed: int, epochs: int | None = None, progress: bool = False, start: Start | None = None,
                stop: int | None = None, resume: Sequence[Checkpoint | None] | None = None,
                checkpoints: Literal[False] = False) -> list[tuple[TreeResult, dict[str, torch.Tensor]]]: ...


@overload
def train_trees(space: SearchSpace, bundle: DatasetBundle, trees: Sequence[BranchingTree], *, device: torch.device,
                seed: int, epochs: int | None = None, progress: bool = False, start: Start | None = None,
                stop: int | None = None, resume: Sequence[Checkpoint | None] | None = None,
                checkpoints: Literal[True]) -> list[tuple[TreeResult, Checkpoint]]: ...


def train_trees(
    space: SearchSpace,
    bundle: DatasetBundle,
    trees: Sequence[BranchingTree],
    *,
    device: torch.device,
    seed: int,
    epochs: int | None = None,
    progress: bool = False,
    start: Start | None = None,
    stop: int | None = None,
    resume: Sequence[Checkpoint | None] | None = None,
    checkpoints: bool = False,
) -> list[tuple[TreeResult, dict[str, torch.Tensor]]] | list[tuple[TreeResult, Checkpoint]]:
    """Train every tree (over all or some of the space's tasks) and evaluate it: the result and the
    trained weights each gets when trained alone by ``train_tree`` (the same initial weights,
    batches and schedule), in ``trees`` order. With ``start`` every tree begins from the weights of
    that coarser trained tree instead of fresh ones (a warm start). ``stop`` trains only the first
    that many epochs of the schedule (``mtnas.train.train_model``).

    ``resume`` (one entry per tree, None for a tree that starts afresh) goes on from each tree's
    checkpoint of the same schedule to ``stop``; ``checkpoints`` returns each tree's checkpoint at
    ``stop`` (``mtnas.train.Checkpoint``, its weights among them) instead of its weights. A tree's
    checkpoint is the same whether its training was stacked or alone, so either resumes the other.

    Trees of one wiring (``TreeStack``), at least ``MIN_STACK`` of them, resumed from the same
    epoch or none, train together, stacked, when the space's loss balancing weighs tasks one by one
    (``STACKABLE_BALANCING``), the backbone runs under ``torch.vmap`` and their checkpoints are of
    one training's stop; the others one at a time. Stacked and alone agree up to float summation
    order. A stacked result's ``seconds`` is its share of the stack's time (plus its checkpoint's).
    """
    resumed = list(resume) if resume is not None else [None] * len(trees)
    if len(resumed) != len(trees):
        raise ValueError(f"{len(resumed)} checkpoints to resume {len(trees)} trees")
    out: list[tuple[TreeResult, Any] | None] = [None] * len(trees)
    nets, rngs = [], []
    for tree in trees:
        nets.append(_net(space, tree, seed, start))
        rngs.append(torch.get_rng_state())  # torch's RNG as this tree's training alone leaves it (vmap draws none)
    groups: dict[tuple, list[int]] = {}
    for i, (net, ckpt) in enumerate(zip(nets, resumed)):
        wiring = _wiring(net) if space.training.balancing in STACKABLE_BALANCING else (i,)
        groups.setdefault((wiring, ckpt.epoch if ckpt is not None else 0), []).append(i)
    for members in groups.values():
        stack = TreeStack([nets[i] for i in members], [[f"{t}@{j}" for t in trees[i].tasks] for j, i in enumerate(members)]) \
            if len(members) >= MIN_STACK else None
        if stack is not None and _check_stackable(stack, bundle.train.inputs[: min(len(bundle.train), 8)]) is not None:
            stack = None
        joint = None
        if stack is not None and resumed[members[0]] is not None:
            try:
                joint = stack.stack_checkpoints([resumed[i] for i in members])  # type: ignore[misc]
            except ValueError:  # not of one training's stop: each goes on alone
                stack = None
        if stack is None:
            for i in members:
                tree_space = _tree_space(space, trees[i])
                alone = train_model(nets[i], tree_space, bundle, device=device, seed=seed, epochs=epochs,
                                    progress=progress, desc=trees[i].describe()[:40], stop=stop,
                                    track=[TrackedRun.of_tree(trees[i])], resume=resumed[i], checkpoint=checkpoints)
                out[i] = (TreeResult(trees[i], tree_cost(trees[i], tree_space), alone.val, alone.test, alone.seconds),
                          alone.checkpoint if checkpoints else
                          {k: v.detach().cpu() for k, v in nets[i].state_dict().items()})
            continue
        stacked, data = _member_problem(space, bundle, stack.outputs)
        result = train_model(stack, stacked, data, device=device, seed=seed, epochs=epochs, progress=progress,
                             desc=f"{len(members)} trees", stop=stop,  # each tree's curves in a run of its own
                             track=[TrackedRun.of_tree(trees[i], {f"{t}@{j}": t for t in trees[i].tasks})
                                    for j, i in enumerate(members)], resume=joint, checkpoint=checkpoints)
        share = (result.seconds - (joint.seconds if joint is not None else 0.0)) / len(members)
        own = stack.member_checkpoints(result.checkpoint) if result.checkpoint is not None else None
        states = stack.member_states()
        for j, i in enumerate(members):
            tree, before = trees[i], resumed[i]
            keys = {t: f"{t}@{j}" for t in tree.tasks}
            seconds = (before.seconds if before is not None else 0.0) + share
            if own is not None:  # the RNG states this tree's own training leaves (the stack draws none)
                kept: Any = replace(own[j], seconds=seconds, torch_rng=before.torch_rng if before else rngs[i],
                                    cuda_rng=before.cuda_rng if before else own[j].cuda_rng)
            else:
                kept = {k: v.detach().cpu().clone() for k, v in states[j].items()}
            val, test = {t: result.val[k] for t, k in keys.items()}, {t: result.test[k] for t, k in keys.items()}
            out[i] = (TreeResult(tree, tree_cost(tree, _tree_space(space, tree)), val, test, seconds), kept)
    return [o for o in out if o is not None]  # type: ignore[return-value]


def tree_resume_problem(space: SearchSpace, tree: BranchingTree, checkpoint: Checkpoint, *, seed: int,
                        stop: int | None = None) -> str | None:
    """What keeps ``checkpoint`` from resuming ``tree``'s training in ``space`` (whose
    ``training.epochs`` is the schedule's length) up to ``stop``; None: ``train_trees`` can resume
    it (``mtnas.train._resume.resume_problem``)."""
    own = _tree_space(space, tree)
    net = _net(space, tree, seed)
    engine = Engine(space=own, params=list(net.parameters()), shared=shared_parameters(net), total_steps=1,
                    device=torch.device("cpu"), seed=seed)
    epochs = space.training.epochs
    return resume_problem(checkpoint, net, engine, torch.Generator().manual_seed(seed), seed=seed, epochs=epochs,
                          stop=min(stop or epochs, epochs), tasks=own.task_names)


def train_subset_networks(
    space: SearchSpace,
    bundle: DatasetBundle,
    members: Sequence[Sequence[str]],
    *,
    device: torch.device,
    seed: int,
    epochs: int | None = None,
    progress: bool = False,
) -> list[TreeResult]:
    """Train one all-shared network per task subset (``members``, e.g. every pair of tasks) and
    evaluate each as trained alone (``subset_space``, seed ``seed``), stacked (``train_trees``)."""
    trees = [BranchingTree.all_shared(tuple(m), space.num_layers) for m in members]
    return [r for r, _ in train_trees(space, bundle, trees, device=device, seed=seed, epochs=epochs, progress=progress)]
