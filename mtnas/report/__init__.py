"""Looking at a run: the tree picture of a trial (``mtnas plot``), the study plots, the
self-contained HTML report (``mtnas report``), and runs side by side (``mtnas compare``).
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._compare": ("CompareData", "CompareReport", "RunFront", "compare_data", "compare_runs", "draw_compare",),
    "._page": ("write_report",),
    "._plot": ("plot_source", "tree_source",),
    "._study_plots": (
        "ParetoPlotData", "ParetoPoint", "draw_history", "draw_importances", "draw_pareto", "front_label",
        "pareto_plot_data", "tree_label",
    ),
})
