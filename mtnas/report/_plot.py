"""``mtnas plot``: the sharing-tree picture of a run's trial or of an arch.json, titled with its cost and delta-m."""

from __future__ import annotations

from pathlib import Path

from mtnas.core import MtnasError
from mtnas.study import SearchRun, choose_trial, load_study
from mtnas.tree import Architecture, BranchingTree
from mtnas.viz import draw_tree, tree_title

__all__ = ["plot_source", "tree_source"]


def tree_source(source: str | Path, *, trial: int | None = None, pick: str = "knee") -> tuple[BranchingTree, str, Path]:
    """The tree to draw, its title and its default picture path, from a run folder or an arch.json.

    A run draws ``trial`` or, without it, the Pareto trial chosen by ``pick`` (as ``mtnas export`` does).
    """
    source = Path(source)
    if source.is_dir():
        run = SearchRun(source)
        study = load_study(run)
        if trial is None:
            trial = choose_trial(study, pick=pick).number
        arch_path = run.trial_dir(trial) / "arch.json"
        if not arch_path.is_file():
            raise MtnasError(f"{source}: trial {trial} has no arch.json (not completed); see 'mtnas trials {source}'")
        name, default = f"{run.root.name} trial {trial}", run.root / "tree.png"
    else:
        if trial is not None:
            raise MtnasError("--trial picks a trial of a run folder; an arch.json holds one tree")
        arch_path, default = source, source.with_name("tree.png")
        name = None
    arch = Architecture.load(arch_path)
    title = tree_title(name, params=arch.cost.get("params"), flops=arch.cost.get("flops"),
                       delta_m=arch.metrics.get("delta_m"))
    return arch.tree, title, default


def plot_source(source: str | Path, out: str | Path | None = None, *, trial: int | None = None,
                pick: str = "knee") -> Path:
    """Draw the tree of ``source`` (run folder or arch.json) to ``out`` (.png, .svg or .pdf)."""
    tree, title, default = tree_source(source, trial=trial, pick=pick)
    out = Path(out) if out else default
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise MtnasError(f"{out}: the picture must end in .png, .svg or .pdf")
    return draw_tree(tree, out, title=title)
