"""What a trained search compared (``candidates.json``): every tree's delta-m (at two seeds) against
its cost, and the tree chosen."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

from mtnas.core import MtnasError, load_json_text, read_text_file
from mtnas.viz._save import save_figure

__all__ = ["SearchCandidates", "candidates_of", "draw_candidates"]


class SearchCandidates(NamedTuple):
    """The trees one trained search trained.

    Attributes:
        trees, epochs, delta_m, delta_m_again, cost: per tree, its description, the epochs it was
            trained for, validation delta-m (%) at the two seeds (NaN: not trained again) and cost
            relative to all-shared.
        chosen: index of the tree the search returned (None when it is not among them).
        noise: the standard deviation of one training's delta-m the choice allowed for.
        gain: the search's ``gain_per_cost`` (delta-m points per all-shared network of extra cost),
            None when the file does not say.
    """

    trees: list[str]
    epochs: list[int]
    delta_m: list[float]
    delta_m_again: list[float]
    cost: list[float]
    chosen: int | None
    noise: float
    gain: float | None = None


def candidates_of(path: str | Path) -> SearchCandidates:
    """Read a ``candidates.json`` (``mtnas.search.SearchResult.save_candidates``)."""
    try:
        data = load_json_text(read_text_file(path, "candidates file", 16 << 20), str(path))
        rows = data["trees"]
        trees = [str(r["tree"]) for r in rows]
        epochs = [int(r.get("epochs", 0)) for r in rows]
        delta_m = [float(r["delta_m"]) for r in rows]
        cost = [float(r["cost"]) for r in rows]
        again = [math.nan if r.get("delta_m_again") is None else float(r["delta_m_again"]) for r in rows]
        noise = float(data.get("noise", 0.0))
        gain = None if data.get("gain_per_cost") is None else float(data["gain_per_cost"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MtnasError(f"{path}: not a candidates file ({type(exc).__name__}: {exc})") from None
    if not all(math.isfinite(v) for v in delta_m + cost + [noise] + ([gain] if gain is not None else [])):
        raise MtnasError(f"{path}: a delta-m or cost that is not a finite number")
    chosen = trees.index(data["chosen"]) if data.get("chosen") in trees else None
    return SearchCandidates(trees, epochs, delta_m, again, cost, chosen, noise, gain)


def draw_candidates(candidates: SearchCandidates, path: str | Path) -> Path:
    """Delta-m against relative cost of every tree the choice compared, each training seed a
    marker and the two joined, each tree numbered by its place in ``candidates.trees`` (from 1);
    the chosen tree ringed, with one training's noise as an error bar; trees trained for part of the
    budget hollow; with the search's ``gain``, the line of the chosen tree's score (a tree above it
    scores better). Written atomically to ``path``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise MtnasError("the candidates plot needs matplotlib: pip install matplotlib") from None

    c, path = candidates, Path(path)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    whole = max(c.epochs, default=0)
    full = [i for i, e in enumerate(c.epochs) if e == whole]
    part = [i for i, e in enumerate(c.epochs) if e != whole]
    ax.scatter([c.cost[i] for i in full], [c.delta_m[i] for i in full], s=22, color="tab:blue",
               label=f"trained for the whole budget ({whole} epochs)")
    if part:
        ax.scatter([c.cost[i] for i in part], [c.delta_m[i] for i in part], s=22, facecolors="none",
                   edgecolors="tab:blue", label="for part of it")
    twice = [i for i, v in enumerate(c.delta_m_again) if math.isfinite(v)]
    if twice:
        ax.scatter([c.cost[i] for i in twice], [c.delta_m_again[i] for i in twice], s=22, marker="x",
                   color="tab:orange", label="second seed")
    for i in twice:
        ax.plot([c.cost[i]] * 2, [c.delta_m[i], c.delta_m_again[i]], color="0.7", lw=1)
    for i, (x, y) in enumerate(zip(c.cost, c.delta_m)):  # numbered as the report's table lists them
        ax.annotate(str(i + 1), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7, color="0.25")
    if c.chosen is not None and c.gain is not None:  # equal score: delta-m - gain * (cost - 1) constant
        x0, y0 = c.cost[c.chosen], c.delta_m[c.chosen]
        xs = [min(c.cost), max(c.cost)]
        ax.plot(xs, [y0 + c.gain * (x - x0) for x in xs], ls="--", lw=1, color="tab:red", alpha=0.6,
                label=f"the chosen tree's score ({c.gain:g} points per network)")
    if c.chosen is not None:
        ax.errorbar([c.cost[c.chosen]], [c.delta_m[c.chosen]], yerr=[c.noise], fmt="o", ms=12, mfc="none",
                    color="tab:red", label="chosen (noise of one training)")
    epochs = sorted(set(c.epochs))
    ax.set(xlabel="cost relative to all-shared", ylabel="delta-m % (val)",
           title=f"What the search compared (trained for {', '.join(map(str, epochs))} epochs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)
