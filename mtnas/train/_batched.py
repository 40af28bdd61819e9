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
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from mtnas.data import DatasetBundle, TaskData
from mtnas.model import BranchedNet, inherit_state, tree_cost
from mtnas.space import SearchSpace
from mtnas.train._engine import train_model
from mtnas.train._fixed_tree import TreeResult, train_tree
from mtnas.train._trackers import TrackedRun
from mtnas.tree import BranchingTree

__all__ = ["SingleTaskStack", "TreeStack", "single_task_space", "subset_space", "train_single_tasks",
           "train_subset_networks", "train_trees"]


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
        self.members = tuple(net.tree.tasks for net in nets)
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

    def member_states(self) -> list[dict[str, torch.Tensor]]:
        """Each member as a ``BranchedNet`` state dict (``layers.{l}.{j}.*``, ``heads.{task}.*``)."""
        states: list[dict[str, torch.Tensor]] = [{} for _ in self.members]
        for layer, nodes in enumerate(self.nodes):
            for j, node in enumerate(nodes):
                for m, state in enumerate(states):
                    state.update({f"layers.{layer}.{j}.{k}": v for k, v in node.member_state(m).items()})
        for group, head in zip(self.head_groups, self.heads):
            for g, i in enumerate(group):
                m, task, _, _ = self.outputs[i]
                state = head.member_state(g) if isinstance(head, _Stacked) else head.state_dict()
                states[m].update({f"heads.{task}.{k}": v.detach() for k, v in state.items()})
        return states


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
) -> list[tuple[TreeResult, dict[str, torch.Tensor]]]:
    """Train every tree (over all or some of the space's tasks) and evaluate it: the result and the
    trained weights each gets when trained alone by ``train_tree`` (the same initial weights,
    batches and schedule), in ``trees`` order. With ``start`` every tree begins from the weights of
    that coarser trained tree instead of fresh ones (a warm start). ``stop`` trains only the first
    that many epochs of the schedule (``mtnas.train.train_model``).

    Trees of one wiring (``TreeStack``), at least ``MIN_STACK`` of them, train together, stacked,
    when the space's loss balancing weighs tasks one by one (``STACKABLE_BALANCING``) and the
    backbone runs under ``torch.vmap``; the others one at a time. Stacked and alone agree up to float
    summation order. A stacked result's ``seconds`` is its share of the stack's time.
    """
    out: list[tuple[TreeResult, dict[str, torch.Tensor]] | None] = [None] * len(trees)
    nets = [_net(space, tree, seed, start) for tree in trees]
    groups: dict[tuple, list[int]] = {}
    for i, net in enumerate(nets):
        groups.setdefault(_wiring(net) if space.training.balancing in STACKABLE_BALANCING else (i,), []).append(i)
    for members in groups.values():
        stack = TreeStack([nets[i] for i in members], [[f"{t}@{j}" for t in trees[i].tasks] for j, i in enumerate(members)]) \
            if len(members) >= MIN_STACK else None
        if stack is None or _check_stackable(stack, bundle.train.inputs[: min(len(bundle.train), 8)]) is not None:
            for i in members:
                tree_space = _tree_space(space, trees[i])
                alone = train_model(nets[i], tree_space, bundle, device=device, seed=seed, epochs=epochs,
                                    progress=progress, desc=trees[i].describe()[:40], stop=stop,
                                    track=[TrackedRun.of_tree(trees[i])])
                out[i] = (TreeResult(trees[i], tree_cost(trees[i], tree_space), alone.val, alone.test, alone.seconds),
                          {k: v.detach().cpu() for k, v in nets[i].state_dict().items()})
            continue
        stacked, data = _member_problem(space, bundle, stack.outputs)
        result = train_model(stack, stacked, data, device=device, seed=seed, epochs=epochs, progress=progress,
                             desc=f"{len(members)} trees", stop=stop,  # each tree's curves in a run of its own
                             track=[TrackedRun.of_tree(trees[i], {f"{t}@{j}": t for t in trees[i].tasks})
                                    for j, i in enumerate(members)])
        states = stack.member_states()
        for j, i in enumerate(members):
            tree = trees[i]
            keys = {t: f"{t}@{j}" for t in tree.tasks}
            out[i] = (TreeResult(tree, tree_cost(tree, _tree_space(space, tree)),
                                 {t: result.val[k] for t, k in keys.items()}, {t: result.test[k] for t, k in keys.items()},
                                 result.seconds / len(members)),
                      {k: v.detach().cpu() for k, v in states[j].items()})
    return [o for o in out if o is not None]


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
