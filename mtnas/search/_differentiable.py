"""The supernet search: train a routing supernet, then read the tree off its routes.

Warm-up epochs train the weights with the routing frozen at uniform (random paths); then each
step alternates a weight step on the training part and a routing step (Adam) on a held-out part
of the training split, with loss = sum of task losses + cost_weight * expected cost. The Gumbel
temperature anneals geometrically from tau0 to tau_min. The routing method (a registry) decides
what else the routing step sees; see ``mtnas.methods``.

With ``search.stable_epochs = k`` the search stops once it has decided: after a routing epoch
whose argmax tree (``routing.derive().tree``) is the same as after each of the k routing epochs
before it, i.e. unchanged for k epochs (early-stopping "patience", as in Prechelt, "Early
Stopping - But When?", 1998, applied to the architecture instead of the validation loss). The
temperature keeps its schedule over the planned ``epochs``, so a search that stops early ends at a
higher tau than one planned that short; only the argmax is derived, which tau does not change.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from itertools import cycle
from typing import Any

import numpy as np
import torch

from mtnas.data import DatasetBundle, TaskData
from mtnas.nn import shared_parameters
from mtnas.search._methods import RoutingContext, RoutingMethod
from mtnas.search._result import SearchResult
from mtnas.search._supernet import Supernet
from mtnas.space import SearchConfig, SearchSpace
from mtnas.train import Engine, NonFiniteLossError

__all__ = ["SupernetSearch", "search_supernet", "split_holdout", "temperature"]


def temperature(epoch: int, cfg: SearchConfig) -> float:
    """Gumbel temperature of ``epoch``: tau0 through warm-up, then geometric decay to tau_min."""
    searching = cfg.epochs - cfg.warmup_epochs
    done = max(epoch - cfg.warmup_epochs, 0) / max(searching - 1, 1)
    return cfg.tau0 * (cfg.tau_min / cfg.tau0) ** min(done, 1.0)


def split_holdout(train: TaskData, fraction: float, seed: int) -> tuple[TaskData, TaskData]:
    """Disjoint (weights, routing) parts of the training split, chosen by a seeded permutation."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    cut = len(train) - max(1, int(round(fraction * len(train))))
    return train.select(order[:cut]), train.select(order[cut:])


def _snapshot(net: Supernet) -> dict[str, np.ndarray]:
    routing = net.routing
    snap = {"heads": routing.head_probs().detach().cpu().numpy()}
    for layer, q in enumerate(routing.parent_probs()):
        if layer and routing.layer_logits(layer) is not None:
            snap[f"layer{layer}"] = q.detach().cpu().numpy()
    return snap


def search_supernet(
    space: SearchSpace,
    bundle: DatasetBundle,
    method: RoutingMethod,
    *,
    seed: int,
    hparams: SearchConfig,
    device: torch.device | str = "cpu",
    branches: int | Sequence[int] | None = None,
    progress: bool = False,
) -> SearchResult:
    """Train a routing supernet on a resolved ``space`` with the routing ``method`` and derive its tree.

    Args:
        space: a resolved search space (``SearchSpace.resolve``).
        bundle: its dataset; routing steps use a held-out part of ``bundle.train``.
        method: what the routing steps optimise (``mtnas.search._methods``).
        seed: fixes weights, sampling and the held-out part (same seed, same tree on the CPU).
        hparams: search hyperparameters.
        branches: K per layer, overriding the space's ``routing.max_branches``.
    """
    from tqdm.auto import tqdm

    cfg = hparams
    device = torch.device(device)
    torch.manual_seed(seed)
    net = Supernet.from_space(space, branches).to(device)
    weight_part, routing_part = (
        part.only(space.task_names).to(device) for part in split_holdout(bundle.train, cfg.holdout, seed)
    )
    bs = space.training.batch_size
    # Weight steps train like any tree (training.optimizer, lr, schedule, balancing); the block
    # copies are the shared weights, heads are task-specific.
    engine = Engine(space=space, params=net.weight_parameters(), shared=shared_parameters(net),
                    total_steps=cfg.epochs * math.ceil(len(weight_part) / bs), device=device, seed=seed)
    r_opt = torch.optim.Adam(net.routing.parameters(), lr=cfg.routing_lr, betas=(0.5, 0.999))
    block_costs, head_cost = net.block_costs(cfg.cost_metric)
    ctx = RoutingContext(net=net, space=space, cfg=cfg, block_costs=block_costs, head_cost=head_cost, train=weight_part)
    state = method.init(ctx)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list[Any]] = {}
    previous, unchanged, stopped = None, 0, None
    start = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc="search", disable=not progress, leave=False)
    for epoch in bar:
        epoch_start = time.perf_counter()
        tau = temperature(epoch, cfg)
        warm = epoch < cfg.warmup_epochs
        routing_batches = cycle(routing_part.batches(bs, shuffle=True, generator=generator))
        engine.start_epoch(epoch)
        for step, batch in enumerate(weight_part.batches(bs, shuffle=True, generator=generator)):
            # Weight step: a sampled tree, routing logits detached (uniform during warm-up).
            with torch.no_grad():
                sample = method.weight_sample(ctx, state, tau, warm)
            engine.step(lambda: net(batch.inputs, sample), batch, where=f"search epoch {epoch}, weight step {step}")
            method.after_weight_step(ctx, state, batch, warm)
            if not warm:
                r_opt.zero_grad(set_to_none=True)
                loss = method.routing_loss(ctx, state, next(routing_batches), tau)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"routing loss is {float(loss)} at search epoch {epoch}, step {step}")
                loss.backward()
                r_opt.step()
        method.after_epoch(ctx, state, epoch, warm)
        engine.end_epoch()
        for key, value in _snapshot(net).items():
            history.setdefault(key, []).append(value)
        history.setdefault("tau", []).append(tau)
        history.setdefault("epoch_seconds", []).append(time.perf_counter() - epoch_start)
        history.setdefault("expected_cost", []).append(float(net.routing.expected_cost(block_costs, head_cost).detach()))
        if not warm:  # the routing is frozen uniform through warm-up: nothing decided yet
            with torch.no_grad():
                tree_key = net.routing.derive().tree.key
            unchanged = unchanged + 1 if tree_key == previous else 0
            previous = tree_key
        history.setdefault("unchanged", []).append(unchanged)
        if cfg.stable_epochs is not None and unchanged >= cfg.stable_epochs and epoch < cfg.epochs - 1:
            stopped = epoch
            break
    bar.close()
    with torch.no_grad():
        derived = net.routing.derive()
    return SearchResult(
        tree=derived.tree,
        derived=derived,
        routing={k: np.asarray(v) for k, v in history.items()},
        weights=net.inherit(derived),
        seconds=time.perf_counter() - start,
        hparams=cfg,
        stopped_epoch=stopped,
    )


class SupernetSearch:
    """A search method that trains a routing supernet with one routing method (``search_supernet``).

    Attributes:
        routing: the routing method (``plain``, ``affinity``, ``rsa``, ``tag``).
        uses: the ``search`` hyperparameters it reads (the ones a study's trials sample).
    """

    kind = "supernet"

    def __init__(self, routing: RoutingMethod, uses: Sequence[str]) -> None:
        self.routing = routing
        self.uses = tuple(uses)

    def search(self, space: SearchSpace, bundle: DatasetBundle, *, seed: int, hparams: SearchConfig,
               device: torch.device | str = "cpu", branches: int | Sequence[int] | None = None,
               progress: bool = False, eval_seed: int | None = None,
               store: object = None) -> SearchResult:
        return search_supernet(space, bundle, self.routing, seed=seed, hparams=hparams, device=device,
                               branches=branches, progress=progress)
