"""``rsa``: the tree from representation similarity of single-task networks (no routing training)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from mtnas.model import relative_cost
from mtnas.search._fixed_routing import FixedTreeMethod, FixedTreeState
from mtnas.space import trade_off_score
from mtnas.train import task_losses
from mtnas.tree import BranchingTree

__all__ = ["RepresentationSimilarity", "rdm", "rsa_dissimilarity"]


def rdm(features: torch.Tensor) -> torch.Tensor:
    """Representation dissimilarity matrix (N, N): 1 - Pearson correlation between samples' features."""
    f = features.flatten(1).double()
    f = f - f.mean(1, keepdim=True)
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return 1 - f @ f.T


def _ranks(v: torch.Tensor) -> torch.Tensor:
    return v.argsort(-1).argsort(-1).double()


def rsa_dissimilarity(rdms: list[torch.Tensor]) -> np.ndarray:
    """(T, T) 1 - Spearman correlation between the upper triangles of the tasks' RDMs."""
    n = rdms[0].shape[0]
    iu = torch.triu_indices(n, n, 1)
    r = torch.stack([_ranks(m[iu[0], iu[1]]) for m in rdms])  # (T, P)
    r = r - r.mean(1, keepdim=True)
    r = r / r.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (1 - r @ r.T).clamp_min(0.0).numpy()


class RepresentationSimilarity(FixedTreeMethod):
    """Vandenhende et al., "Branched Multi-Task Networks: Deciding What Layers to Share", BMVC 2020.

    1. One single-task network per task (the backbone's layers and the task's head, every one from
       the same fresh initialisation, as their ImageNet start is shared) is trained on the
       weight part of the training split: ``epochs`` epochs each, fewer with many tasks so that
       all of them together train at most ``budget_epochs`` single-network epochs.
    2. At each layer l, each network's features on ``probe`` fixed training images give an RDM
       (1 - Pearson correlation between images); the tasks' dissimilarity ``D_l[i, j]`` is 1 - the
       Spearman correlation of their RDMs (RSA).
    3. Candidate trees: all-shared, and for each layer s and k = 2..K_s the tree that splits at s
       into the average-linkage clusters of ``mean_{l >= s} D_l`` (their method enumerates all
       trees; one split point with clustered groups keeps this affordable at 40 tasks). Each is
       scored by their task dissimilarity score, ``sum_l`` of the average over layer l's nodes of
       the largest ``D_l`` between two tasks of the node, divided by the number of layers; their
       cost budget becomes a Lagrangian term: the tree minimising
       ``score + cost_weight * (relative cost - 1)`` is chosen (the trade-off of
       ``mtnas.space.trade_off_score`` with the score's sign turned, as a dissimilarity is to be
       low; ``mtnas.model.relative_cost``, 1 = all-shared).

    No supernet routing is trained: the search's warm-up trains the shared path, the chosen tree is
    written into the routing at its end and its weights are trained for the remaining epochs
    (see ``mtnas.search._fixed_routing``).
    """

    probe = 200
    epochs = 8
    budget_epochs = 48

    def init(self, ctx: Any) -> FixedTreeState:
        state = FixedTreeState()
        # The fresh blocks of node 0 and the fresh heads: every single-task network starts from them.
        state.info["fresh"] = copy.deepcopy(nn.ModuleList([blocks[0] for blocks in ctx.net.layers])).cpu()
        state.info["heads"] = copy.deepcopy(ctx.net.heads).cpu()
        return state

    def single_task_features(self, ctx: Any, state: FixedTreeState) -> list[list[torch.Tensor]]:
        """Per task, per layer: the features (probe, ...) of its trained single-task network."""
        space, train = ctx.space, ctx.train
        device = train.inputs.device
        generator = torch.Generator().manual_seed(int(torch.randint(2**31, ())))
        rows = torch.randperm(len(train), generator=generator)[: self.probe].to(device)
        probe = train.select(rows).inputs
        t = len(space.tasks)
        epochs = max(1, min(self.epochs, self.budget_epochs // t))
        out = []
        for task in space.task_names:
            blocks = copy.deepcopy(state.info["fresh"]).to(device)
            head = copy.deepcopy(state.info["heads"][task]).to(device)
            params = [*blocks.parameters(), *head.parameters()]
            opt = torch.optim.Adam(params, lr=space.training.lr)
            blocks.train()
            head.train()
            for _ in range(epochs):
                for batch in train.batches(space.training.batch_size, shuffle=True, generator=generator):
                    h = batch.inputs
                    for block in blocks:
                        h = block(h)
                    loss = task_losses({task: head(h)}, batch.targets, space, batch.masks)[task]
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            blocks.eval()
            feats, h = [], probe
            with torch.no_grad():
                for block in blocks:
                    h = block(h)
                    feats.append(h.detach().cpu())
            out.append(feats)
        state.info["single_task_epochs"] = epochs
        return out

    def choose_tree(self, ctx: Any, state: FixedTreeState) -> BranchingTree:
        feats = self.single_task_features(ctx, state)
        layers = ctx.space.num_layers
        d = np.stack([rsa_dissimilarity([rdm(f[layer]) for f in feats]) for layer in range(layers)])  # (L, T, T)
        state.info["dissimilarity"] = d
        index = {task: i for i, task in enumerate(ctx.space.task_names)}

        def score(tree: BranchingTree) -> float:
            total = 0.0
            for layer, part in enumerate(tree.partitions):
                worst = [max((d[layer, index[a], index[b]] for a in g for b in g), default=0.0) for g in part]
                total += sum(worst) / len(part)
            cost = relative_cost(tree, ctx.space, ctx.cfg.cost_metric)
            return -trade_off_score(-total / layers, cost, ctx.cfg.cost_weight)

        cands = self.candidates(ctx, lambda s: d[s:].mean(0))
        scores = [score(tree) for tree in cands]
        state.info["scores"] = {tree.describe(): s for tree, s in zip(cands, scores)}
        return cands[int(np.argmin(scores))] if not math.isnan(min(scores)) else cands[0]
