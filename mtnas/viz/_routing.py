"""How the routing of one differentiable search evolved, epoch by epoch, from its ``routing.npz``.

The search records, per epoch, the parent probabilities of every node of each routed layer
(``layer{l}``: (E, K_l, K_{l-1})), each task head's probabilities over the last layer's nodes
(``heads``: (E, T, K_last)), the Gumbel temperature ``tau`` and the expected cost. From them this
module derives, as data, the argmax tree of every epoch: how many nodes of each layer it uses
(where the tree has split) and the epoch from which it no longer changes (when it split).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mtnas.core import MtnasError

__all__ = ["LayerRouting", "RoutingEvolution", "draw_routing", "routing_evolution"]


class LayerRouting(NamedTuple):
    """The parent probabilities of one routed layer.

    Attributes:
        layer: the backbone layer whose nodes choose a parent in ``layer - 1``.
        probs: (E, K_l, K_{l-1}) parent probabilities per epoch; each child's row sums to 1.
        used: (K_l,) whether the final argmax tree uses each node of this layer.
        parents: (K_l,) the final argmax parent of each node.
    """

    layer: int
    probs: np.ndarray
    used: np.ndarray
    parents: np.ndarray


class RoutingEvolution(NamedTuple):
    """Routing history of one search, ready to draw.

    Attributes:
        tasks: task names, in the order of the head rows.
        epochs: (E,) epoch numbers, 0-based.
        layers: the routed layers, lowest first (identity layers are not recorded).
        heads: (E, T, K_last) each task's probabilities over the last layer's nodes.
        tau: (E,) Gumbel temperature, or None when not recorded.
        expected_cost: (E,) expected cost relative to all-shared, or None.
        nodes_used: ``{"layer l": (E,) int}``, lowest layer first: the nodes of each epoch's
            argmax tree at each routed layer and the layer below the lowest one; a count above 1
            means the tree has split at or below that layer.
        settled_epoch: first epoch from which the argmax tree (heads and the parents of used
            nodes) stays as it ends; None when it changes at the last epoch.
    """

    tasks: tuple[str, ...]
    epochs: np.ndarray
    layers: tuple[LayerRouting, ...]
    heads: np.ndarray
    tau: np.ndarray | None
    expected_cost: np.ndarray | None
    nodes_used: dict[str, np.ndarray]
    settled_epoch: int | None


def _argmax_tree(heads: np.ndarray, layers: list[tuple[int, np.ndarray]]) -> tuple[list[set[int]], tuple]:
    """Used node sets (heads' layer first, then down each routed layer) and a hashable signature
    of the argmax tree of one epoch. ``heads``: (T, K); ``layers``: [(l, (K_l, K_{l-1}))], lowest first."""
    choice = tuple(int(k) for k in heads.argmax(-1))
    used = [set(choice)]
    signature: list[tuple] = [choice]
    for _, q in reversed(layers):
        parents = {k: int(q[k].argmax()) for k in sorted(used[-1])}
        signature.append(tuple(sorted(parents.items())))
        used.append(set(parents.values()))
    return used, tuple(signature)


def routing_evolution(npz_path: str | Path) -> RoutingEvolution:
    """Read a ``routing.npz`` written by :meth:`mtnas.search.SearchResult.save_routing`."""
    path = Path(npz_path)
    if not path.is_file():
        raise MtnasError(f"{path}: no routing history there (a 'differentiable' search trial writes routing.npz)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated, not an npz, pickled
        raise MtnasError(f"{path}: damaged routing history ({type(exc).__name__}); the trial's tree and "
                         "metrics are unaffected") from None
    if "heads" not in arrays or arrays["heads"].ndim != 3:
        raise MtnasError(f"{path}: not a routing history (no 'heads' array); found {sorted(arrays)}")
    heads = arrays["heads"].astype(float)  # (E, T, K_last)
    num_epochs, num_tasks, _ = heads.shape
    tasks = tuple(str(t) for t in arrays["tasks"]) if "tasks" in arrays else tuple(f"task{i}" for i in range(num_tasks))
    routed = sorted(
        (int(name[len("layer"):]), arrays[name].astype(float))
        for name in arrays
        if name.startswith("layer") and name[len("layer"):].isdigit()
    )
    per_epoch = [_argmax_tree(heads[e], [(layer, q[e]) for layer, q in routed]) for e in range(num_epochs)]
    final_used, final_signature = per_epoch[-1]
    layers = []
    for i, (layer, q) in enumerate(routed):
        used_here = final_used[len(routed) - 1 - i]  # used sets run from the top layer down
        used = np.array([k in used_here for k in range(q.shape[1])])
        layers.append(LayerRouting(layer, q, used, q[-1].argmax(-1)))
    # layers after the highest routed one are identities: its node count is the heads' count
    top = f"layer {routed[-1][0]}" if routed else "last layer"
    counts = {top: np.array([len(u[0]) for u, _ in per_epoch])}
    for i, (layer, _) in enumerate(reversed(routed)):
        counts[f"layer {layer - 1}"] = np.array([len(u[i + 1]) for u, _ in per_epoch])
    settled = num_epochs
    while settled > 0 and per_epoch[settled - 1][1] == final_signature:
        settled -= 1
    return RoutingEvolution(
        tasks=tasks,
        epochs=np.arange(num_epochs),
        layers=tuple(layers),
        heads=heads,
        tau=arrays["tau"].astype(float) if "tau" in arrays else None,
        expected_cost=arrays["expected_cost"].astype(float) if "expected_cost" in arrays else None,
        nodes_used=dict(reversed(counts.items())),
        settled_epoch=settled if settled < num_epochs else None,
    )


def _heatmap(ax, rows: np.ndarray, labels: list[str], bold: list[bool], title: str, settled: int | None):
    """One panel: ``rows`` (R, E) probabilities; bold labels for the routes the final tree takes."""
    image = ax.imshow(rows, aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=9)
    for tick, strong in zip(ax.get_yticklabels(), bold):
        tick.set_fontweight("bold" if strong else "normal")
        tick.set_color("black" if strong else "#888888")
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("epoch", fontsize=9)
    ax.tick_params(axis="x", labelsize=9)
    if settled is not None:
        ax.axvline(settled - 0.5, color="white", linestyle="--", linewidth=1.2)
    return image


def draw_routing(data: RoutingEvolution, path: str | Path, *, title: str | None = None) -> Path:
    """Draw ``data``: one heatmap per routed layer and one for the heads (rows: child <- parent,
    bold where the final tree routes), then temperature, expected cost and nodes used per epoch.

    The file type follows the suffix of ``path`` (.png, .svg, .pdf).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = len(data.layers) + 1
    cols = min(panels, 4)
    heat_rows = -(-panels // cols)
    max_labels = max([q.probs.shape[1] * q.probs.shape[2] for q in data.layers] + [data.heads.shape[1] * data.heads.shape[2]])
    heat_height = max(2.6, 0.17 * max_labels + 1.0)
    fig = plt.figure(figsize=(3.1 * cols + 1.0, heat_height * heat_rows + 3.0), layout="constrained")
    grid = fig.add_gridspec(heat_rows + 1, cols, height_ratios=[heat_height] * heat_rows + [2.6])
    image = None
    for i, lr in enumerate(data.layers):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        _, k_child, k_parent = lr.probs.shape
        rows = lr.probs.transpose(1, 2, 0).reshape(k_child * k_parent, -1)  # (K_l * K_{l-1}, E)
        labels = [f"node {k} \u2190 {j}" for k in range(k_child) for j in range(k_parent)]
        bold = [bool(lr.used[k] and lr.parents[k] == j) for k in range(k_child) for j in range(k_parent)]
        image = _heatmap(ax, rows, labels, bold, f"layer {lr.layer}: parent in layer {lr.layer - 1}", data.settled_epoch)
    ax = fig.add_subplot(grid[len(data.layers) // cols, len(data.layers) % cols])
    _, num_tasks, k_last = data.heads.shape
    rows = data.heads.transpose(1, 2, 0).reshape(num_tasks * k_last, -1)  # (T * K, E)
    final = data.heads[-1].argmax(-1)
    labels = [f"{t} \u2192 {k}" for t in data.tasks for k in range(k_last)]
    bold = [bool(final[i] == k) for i in range(num_tasks) for k in range(k_last)]
    image = _heatmap(ax, rows, labels, bold, "task heads: node of the last layer", data.settled_epoch)
    fig.colorbar(image, ax=fig.axes, shrink=0.6, label="probability", location="right")

    bottom = grid[heat_rows, :].subgridspec(1, 2)
    ax = fig.add_subplot(bottom[0, 0])
    if data.tau is not None:
        ax.plot(data.epochs, data.tau, color="#0072B2", label="temperature \u03c4")
        ax.set_ylabel("temperature \u03c4", color="#0072B2", fontsize=9)
    if data.expected_cost is not None:
        twin = ax.twinx()
        twin.plot(data.epochs, data.expected_cost, color="#D55E00", label="expected cost")
        twin.set_ylabel("expected cost (\u00d7 all-shared)", color="#D55E00", fontsize=9)
    ax.set_xlabel("epoch", fontsize=9)
    ax.set_title("temperature and expected cost", fontsize=11)
    if data.settled_epoch is not None:
        ax.axvline(data.settled_epoch - 0.5, color="#555555", linestyle="--", linewidth=1)
    ax = fig.add_subplot(bottom[0, 1])
    names = list(data.nodes_used)
    counts = np.array([data.nodes_used[n] for n in names])  # (layers, E)
    ax.imshow(counts, aspect="auto", cmap="Blues", vmin=0, vmax=max(2 * int(counts.max()), 2), interpolation="nearest")
    for (row, epoch), value in np.ndenumerate(counts):
        ax.text(epoch, row, str(value), ha="center", va="center", fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=9)
    ax.set_xlabel("epoch", fontsize=9)
    ax.set_title("argmax tree: nodes used per layer (>1: split)", fontsize=11)
    if data.settled_epoch is not None:
        ax.axvline(data.settled_epoch - 0.5, color="#555555", linestyle="--", linewidth=1)
    for a in fig.axes:
        if a.get_xlabel() == "epoch":  # not the colour bar
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
    settled = "never settled" if data.settled_epoch is None else f"argmax tree fixed from epoch {data.settled_epoch}"
    fig.suptitle(title or f"Routing over {len(data.epochs)} epochs ({settled})", fontsize=12)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
