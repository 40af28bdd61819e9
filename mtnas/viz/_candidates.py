"""What a trained search compared (``candidates.json``): every trained tree's delta-m against its
cost, the local search's path, and the tree chosen."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

from mtnas.core import MtnasError, load_json_text, read_text_file

__all__ = ["SearchCandidates", "candidates_of", "draw_candidates"]


class SearchCandidates(NamedTuple):
    """The trees one trained search trained.

    Attributes:
        trees, epochs, delta_m, cost: per tree, its description, the epochs it was trained for,
            validation delta-m (%) and cost relative to all-shared.
        path: indices of the trees the grouping search moved through, in order.
        chosen: index of the tree the search returned (None when it is not among them).
        noise: the standard deviation of one training's delta-m the choice allowed for.
    """

    trees: list[str]
    epochs: list[int]
    delta_m: list[float]
    cost: list[float]
    path: list[int]
    chosen: int | None
    noise: float


def candidates_of(path: str | Path) -> SearchCandidates:
    """Read a ``candidates.json`` (``mtnas.search.SearchResult.save_candidates``)."""
    try:
        data = load_json_text(read_text_file(path, "candidates file", 16 << 20), str(path))
        rows = data["trees"]
        trees = [str(r["tree"]) for r in rows]
        epochs = [int(r.get("epochs", 0)) for r in rows]
        delta_m = [float(r["delta_m"]) for r in rows]
        cost = [float(r["cost"]) for r in rows]
        steps = sorted((int(r["step"]), i) for i, r in enumerate(rows) if int(r["step"]) >= 0)
        noise = float(data.get("noise", 0.0))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MtnasError(f"{path}: not a candidates file ({type(exc).__name__}: {exc})") from None
    if not all(math.isfinite(v) for v in delta_m + cost + [noise]):
        raise MtnasError(f"{path}: a delta-m or cost that is not a finite number")
    chosen = trees.index(data["chosen"]) if data.get("chosen") in trees else None
    return SearchCandidates(trees, epochs, delta_m, cost, [i for _, i in steps], chosen, noise)


def draw_candidates(candidates: SearchCandidates, path: str | Path) -> Path:
    """One panel per training budget: delta-m against relative cost of every tree trained for it;
    the grouping search's path as a line, the chosen tree ringed with its noise as an error bar.
    Written atomically to ``path``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise MtnasError("the candidates plot needs matplotlib: pip install matplotlib") from None

    c, path = candidates, Path(path)
    budgets = sorted(set(c.epochs))
    fig = Figure(figsize=(6 * len(budgets), 4.5))
    axes = fig.subplots(1, len(budgets), squeeze=False)[0]
    for ax, epochs in zip(axes, budgets):
        mine = [i for i, e in enumerate(c.epochs) if e == epochs]
        ax.scatter([c.cost[i] for i in mine], [c.delta_m[i] for i in mine], s=18, color="0.6", label="trained tree")
        steps = [i for i in c.path if c.epochs[i] == epochs]
        if steps:
            ax.plot([c.cost[i] for i in steps], [c.delta_m[i] for i in steps], "-o", color="tab:blue", ms=4,
                    label="grouping search")
        if c.chosen is not None and c.epochs[c.chosen] == epochs:
            ax.errorbar([c.cost[c.chosen]], [c.delta_m[c.chosen]], yerr=[c.noise], fmt="o", ms=11, mfc="none",
                        color="tab:red", label="chosen (noise of one training)")
        ax.set(xlabel="cost relative to all-shared", ylabel="delta-m % (val)", title=f"trained for {epochs} epochs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return path
