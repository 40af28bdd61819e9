"""Draw a sharing tree from its ``TreeLayout``: boxes per node, lines per edge, task names at the heads.

The figure is sized from the layout (one row per task, columns as wide as the longest label), so
labels never collide; matplotlib is imported here only, and only the object-oriented API is used
(no pyplot state), so drawing is safe in worker processes and threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtnas.tree import BranchingTree
from mtnas.viz._save import save_figure
from mtnas.viz._tree_layout import NAMED_TASKS_MAX, TreeLayout, layout_tree

__all__ = ["draw_tree", "render_tree", "tree_title"]

FONT_SIZE = 9
ROW_INCHES = 0.3
CHAR_INCHES = 0.075  # the average width of a character at FONT_SIZE


def tree_title(name: str | None = None, *, params: int | None = None, flops: int | None = None,
               delta_m: float | None = None) -> str:
    """``name — 17,286 params · 1.25 MFLOPs · delta-m -2.74%`` with the parts that are known."""
    parts = []
    if params is not None:
        parts.append(f"{params:,} params")
    if flops is not None:
        parts.append(f"{flops / 1e6:.2f} MFLOPs")
    if delta_m is not None:
        parts.append(f"delta-m {delta_m:+.2f}%")
    facts = " · ".join(parts)
    title = " — ".join(p for p in (name, facts) if p)
    return title.encode("utf-8", "replace").decode("utf-8")  # a folder name of undecodable bytes draws as '?'



def render_tree(layout: TreeLayout, *, title: str | None = None) -> Any:
    """A matplotlib ``Figure`` of ``layout`` (not yet saved)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    column_inches = max(1.1, (CHAR_INCHES * layout.longest_box_line + 0.15) / layout.box_width)
    leaf_units = (CHAR_INCHES * layout.longest_leaf + 0.2) / column_inches
    x_max = layout.width - 1 + leaf_units
    width = column_inches * (x_max + 0.5)
    height = ROW_INCHES * (layout.num_rows + 1.6) + (0.35 if title else 0)
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1 - (0.35 / height if title else 0)))
    ax.set_xlim(-0.45, x_max)
    ax.set_ylim(layout.num_rows + 0.1, -1.3)  # row 0 at the top; room for the column headings
    ax.axis("off")
    half = layout.box_width / 2
    for e in layout.edges:
        xm = (e.x0 + e.x1) / 2  # an elbow: out horizontally, down/up, in horizontally
        ax.plot([e.x0, xm, xm, e.x1], [e.y0, e.y0, e.y1, e.y1], color=e.colour if e.colour != "#DDDDDD" else "#888888",
                lw=1.4, solid_joinstyle="round", zorder=1)
    for node in layout.nodes:
        box = FancyBboxPatch(
            (node.x - half, node.y_top), layout.box_width, node.y_bottom - node.y_top,
            boxstyle="round,pad=0,rounding_size=0.08", facecolor=_tint(node.colour), edgecolor=_edge(node.colour),
            lw=1.2, zorder=2,
        )
        ax.add_patch(box)
        lines = node.label.split("\n")
        first = node.y_top + (node.y_bottom - node.y_top - (len(lines) - 1)) / 2
        for i, line in enumerate(lines):
            ax.text(node.x, first + i, line, ha="center", va="center", fontsize=FONT_SIZE, zorder=3)
        if node.branches:  # a branch point: a dot where the paths part
            ax.plot([node.x + half], [node.y], "o", color="#333333", ms=4, zorder=3)
    for task, x, y, colour in layout.leaves:
        ax.text(x - half, y, task, ha="left", va="center", fontsize=FONT_SIZE, color=colour, fontweight="bold", zorder=3)
    for x, heading in layout.columns:
        ax.text(x, -1.0, heading, ha="left" if heading == "heads" else "center", va="center",
                fontsize=FONT_SIZE - 1, color="#555555")
    if title:
        fig.suptitle(title, fontsize=FONT_SIZE + 1, y=1 - 0.1 / height, va="top")
    return fig


def draw_tree(tree: BranchingTree, path: str | Path, *, title: str | None = None,
              named_tasks_max: int = NAMED_TASKS_MAX) -> Path:
    """Write the picture of ``tree`` to ``path`` (.png, .svg or .pdf, by its suffix)."""
    fig = render_tree(layout_tree(tree, named_tasks_max=named_tasks_max), title=title)
    return save_figure(fig, path, dpi=110, facecolor="white")


def _tint(colour: str) -> str:
    """A light fill for a box of ``colour`` (white for the input)."""
    if colour.upper() in ("#FFFFFF", "#DDDDDD"):
        return colour
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(c + (255 - c) * 0.75):02X}" for c in (r, g, b))


def _edge(colour: str) -> str:
    return "#666666" if colour.upper() in ("#FFFFFF", "#DDDDDD") else colour
