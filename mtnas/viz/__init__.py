"""Pictures of what a search found: sharing trees, routing evolution, study plots, the HTML report.

Each plot computes a small data object first (positions, labels, series) and draws it second, so
tests check the data, not pixels; matplotlib is imported only inside the drawing functions.
"""

from mtnas.viz._tree_layout import TreeLayout, layout_tree
from mtnas.viz._tree_plot import draw_tree, render_tree, tree_title

__all__ = ["TreeLayout", "draw_tree", "layout_tree", "render_tree", "tree_title"]
