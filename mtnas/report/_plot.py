"""``mtnas plot``: the sharing-tree picture of a run's trial or of an arch.json, titled with its cost and delta-m."""

from __future__ import annotations

from pathlib import Path

from mtnas.core import MtnasError
from mtnas.study import SearchRun, choose_trial, load_study, trial_tree
from mtnas.tree import Architecture, BranchingTree
from mtnas.viz import draw_tree, tree_title

__all__ = ["plot_source", "tree_source"]


def tree_source(source: str | Path, *, trial: int | None = None, pick: str = "trade-off") -> tuple[BranchingTree, str, Path]:
    """The tree to draw, its title and its default picture path, from an arch.json, a run folder
    or a study's ``STORAGE_URL#STUDY``.

    A run draws ``trial`` or, without it, the Pareto trial chosen by ``pick`` (as ``mtnas export``
    does); its tree and cost are read from the study, so no trial file is needed.
    """
    if Path(source).is_file():
        if trial is not None:
            raise MtnasError("--trial picks a trial of a run; an arch.json holds one tree")
        arch = Architecture.load(source)
        title = tree_title(None, params=arch.cost.get("params"), flops=arch.cost.get("flops"),
                           delta_m=arch.metrics.get("delta_m"))
        return arch.tree, title, Path(source).with_name("tree.png")
    run = SearchRun.open(source)
    study = load_study(run)
    chosen = choose_trial(study, trial, pick)
    attrs = chosen.user_attrs
    title = tree_title(f"{run.name} trial {chosen.number}", params=attrs.get("params"), flops=attrs.get("flops"),
                       delta_m=attrs.get("delta_m"))
    return trial_tree(study, chosen), title, run.root / "tree.png"


def plot_source(source: str | Path, out: str | Path | None = None, *, trial: int | None = None,
                pick: str = "trade-off") -> Path:
    """Draw the tree of ``source`` (run folder or arch.json) to ``out`` (.png, .svg or .pdf)."""
    tree, title, default = tree_source(source, trial=trial, pick=pick)
    out = Path(out) if out else default
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise MtnasError(f"{out}: the picture must end in .png, .svg or .pdf")
    return draw_tree(tree, out, title=title)
