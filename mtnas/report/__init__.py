"""Looking at a run: the tree picture of a trial (``mtnas plot``), the study plots, and the
self-contained HTML report (``mtnas report``).
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._page": ("write_report",),
    "._plot": ("plot_source", "tree_source",),
    "._study_plots": (
        "ParetoPlotData", "ParetoPoint", "draw_history", "draw_importances", "draw_pareto", "pareto_plot_data",
        "short_tree",
    ),
})
