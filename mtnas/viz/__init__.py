"""Pictures of trees and training: sharing trees, routing evolution, what a trained search compared,
retrain curves.

Each plot computes a small data object first (positions, labels, series) and draws it second, so
tests check the data, not pixels; matplotlib is imported only inside the drawing functions.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._candidates": ("SearchCandidates", "candidates_of", "draw_candidates",),
    "._curves": ("RetrainCurves", "draw_curves",),
    "._routing": ("LayerRouting", "RoutingEvolution", "draw_routing", "routing_evolution",),
    "._tree_layout": ("LayoutEdge", "LayoutNode", "TreeLayout", "layout_tree", "task_order",),
    "._tree_plot": ("draw_tree", "render_tree", "tree_title",),
})
