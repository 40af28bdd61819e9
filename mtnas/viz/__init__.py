"""Pictures of what a search found: sharing trees, routing evolution, study plots, the HTML report.

Each plot computes a small data object first (positions, labels, series) and draws it second, so
tests check the data, not pixels; matplotlib is imported only inside the drawing functions.
"""

from mtnas.viz._routing import RoutingEvolution, draw_routing, routing_evolution
from mtnas.viz._study import (
    ParetoPlotData,
    draw_history,
    draw_importances,
    draw_pareto,
    pareto_plot_data,
)
from mtnas.viz._tree_layout import TreeLayout, layout_tree
from mtnas.viz._tree_plot import draw_tree, render_tree, tree_title

__all__ = ["ParetoPlotData", "RoutingEvolution", "TreeLayout", "draw_history", "draw_importances", "draw_pareto",
           "draw_routing", "draw_tree", "layout_tree", "pareto_plot_data", "render_tree", "routing_evolution",
           "tree_title"]
