"""``dmtg``: one-shot differentiable grouping with a head for every task on every branch.

Gao, Jiang, Li, Yu and Xia, "DMTG: One-Shot Differentiable Multi-Task Grouping", ICML 2024. K
branch networks each carry a head for every task; task t's loss on branch k is weighted by its
relaxed assignment ``w[t, k]`` (a Gumbel-softmax sample of learnable logits, soft), and weights
and assignment logits train together on ``sum_t sum_k w[t, k] L_tk``. Every task is measured on
every branch, so none is judged on a path it never trained; ``d loss / d w[t, k] = L_tk`` moves
each task towards the branch where its own loss is lowest, whatever its loss scale (only a task's
losses on different branches are compared). DMTG groups at one layer; here the branches are the
supernet's nodes, so every node of a branching layer also chooses its parent by a relaxed route
(``Supernet.last_features_soft``), and the tree is read off the routes as in the supernet search.

Differences from the paper, which trains 100 epochs at a fixed temperature: the temperature
anneals from ``tau0`` to ``tau_min`` over ``search.epochs`` so the assignment sharpens within a
search's budget, and the logits have their own Adam (``routing_lr``). No cost term: as in DMTG the
number of branches is the budget (``routing.max_branches``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtnas.data import DatasetBundle
from mtnas.model import build_heads
from mtnas.search._result import SearchResult
from mtnas.search._supernet import Supernet
from mtnas.space import SearchConfig, SearchSpace
from mtnas.train import NonFiniteLossError, task_losses

__all__ = ["DMTG"]


class DMTG:
    """DMTG on the routing supernet (module docstring)."""

    kind = "supernet"
    uses = ("tau0", "tau_min", "routing_lr")

    def search(self, space: SearchSpace, bundle: DatasetBundle, *, seed: int, hparams: SearchConfig,
               device: torch.device | str = "cpu", branches: int | Sequence[int] | None = None,
               progress: bool = False, eval_seed: int | None = None,
               store: object = None) -> SearchResult:
        cfg, device = hparams, torch.device(device)
        start = time.perf_counter()
        torch.manual_seed(seed)
        net = Supernet.from_space(space, branches).to(device)
        last = net.plans[-1].out_shape
        heads = nn.ModuleList(build_heads(space, last) for _ in range(net.routing.branches[-1])).to(device)
        blocks = [p for layer in net.layers for p in layer.parameters()]
        opt = torch.optim.Adam([*blocks, *heads.parameters()], lr=space.training.lr,
                               weight_decay=space.training.weight_decay)
        r_opt = torch.optim.Adam(net.routing.parameters(), lr=cfg.routing_lr, betas=(0.5, 0.999))
        train = bundle.train.only(space.task_names).to(device)
        generator = torch.Generator().manual_seed(seed)
        history: dict[str, list[Any]] = {}
        block_costs, head_cost = net.block_costs(cfg.cost_metric)
        previous = None
        for epoch in range(cfg.epochs):
            epoch_start = time.perf_counter()
            tau = cfg.tau0 * (cfg.tau_min / cfg.tau0) ** (epoch / max(cfg.epochs - 1, 1))
            for step, batch in enumerate(train.batches(space.training.batch_size, shuffle=True, generator=generator)):
                feats = net.last_features_soft(batch.inputs, tau)  # (K, B, ...)
                w = F.gumbel_softmax(net.routing.head_logits, tau=tau, hard=False)  # (T, K)
                loss = feats.new_zeros(())
                for k, node_heads in enumerate(heads):
                    losses = task_losses({t: h(feats[k]) for t, h in node_heads.items()}, batch.targets, space,
                                         batch.masks)
                    loss = loss + sum(w[i, k] * losses[t] for i, t in enumerate(space.task_names))
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"dmtg loss is {float(loss)} at search epoch {epoch}, step {step}")
                opt.zero_grad(set_to_none=True)
                r_opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                r_opt.step()
            key = _record(history, net, tau, time.perf_counter() - epoch_start, block_costs, head_cost)
            history.setdefault("unchanged", []).append(history["unchanged"][-1] + 1 if key == previous else 0)
            previous = key
        with torch.no_grad():
            derived = net.routing.derive()
            for task in space.task_names:  # each task keeps the head of the branch it chose
                node = derived.node_of[space.num_layers - 1, derived.tree.group_of(task, space.num_layers - 1)]
                net.heads[task].load_state_dict(heads[node][task].state_dict())
        return SearchResult(tree=derived.tree, derived=derived, routing={k: np.asarray(v) for k, v in history.items()},
                            weights=net.inherit(derived), seconds=time.perf_counter() - start, hparams=cfg)


def _record(history: dict[str, list[Any]], net: Supernet, tau: float, seconds: float, block_costs: list[float],
            head_cost: float) -> str:
    """One epoch of routing history, in the keys of the supernet search's ``routing.npz``; returns
    the key of the argmax tree."""
    routing = net.routing
    with torch.no_grad():
        history.setdefault("heads", []).append(routing.head_probs().cpu().numpy())
        for layer, q in enumerate(routing.parent_probs()):
            if layer and routing.layer_logits(layer) is not None:
                history.setdefault(f"layer{layer}", []).append(q.cpu().numpy())
        history.setdefault("tau", []).append(tau)
        history.setdefault("epoch_seconds", []).append(seconds)
        history.setdefault("expected_cost", []).append(float(routing.expected_cost(block_costs, head_cost)))
        return routing.derive().tree.key
