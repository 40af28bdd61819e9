"""Training curves of a retrain (``curves.png``): train loss per task and a val metric per task."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from mtnas.core import MtnasError
from mtnas.viz._save import save_figure

__all__ = ["RetrainCurves", "draw_curves"]


class RetrainCurves(NamedTuple):
    """Per-epoch series: train loss per task, val metric per (task, metric)."""

    epochs: list[int]
    train_loss: dict[str, list[float]]
    val: dict[str, list[float]]  # "task metric" -> values


def draw_curves(curves: RetrainCurves, path: str | Path) -> Path:
    """Two panels, loss and val metric over epochs, written atomically to ``path``."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise MtnasError("curves.png needs matplotlib: pip install matplotlib") from None

    path = Path(path)
    fig = Figure(figsize=(10, 4))  # object-oriented: no pyplot state, safe in any thread
    ax_loss, ax_val = fig.subplots(1, 2)
    for task, values in curves.train_loss.items():
        ax_loss.plot(curves.epochs, values, marker=".", label=task)
    for name, values in curves.val.items():
        ax_val.plot(curves.epochs, values, marker=".", label=name)
    ax_loss.set(title="train loss", xlabel="epoch", ylabel="loss (weighted)")
    ax_val.set(title="val metric", xlabel="epoch")
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
