"""``mtnas export RUN``: a found tree leaves its run as files anyone can rebuild.

One trial is picked (``--trial N`` or ``--pick``, see ``mtnas.study.PICKS``) and written as
``DIR/arch.json`` (self-contained: the resolved space is inside), ``DIR/tree.png`` and, with
``--with-weights``, ``DIR/weights.safetensors``: the supernet weights that tree inherits, keyed as
``BranchedNet`` names its parameters, so ``mtnas retrain DIR/arch.json --init inherited`` loads them.

An export is written all or nothing (``mtnas.core.replace_files``): a failed one leaves ``DIR`` as
it was, and a new one replaces every file an earlier export wrote there (the weights of an earlier
``--with-weights`` export do not stay beside another tree).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtnas.core import MtnasError, replace_files
from mtnas.model import load_weights
from mtnas.study import INHERITED, SearchRun, choose_trial, load_study, trial_file, trial_tree
from mtnas.tree import Architecture
from mtnas.viz import draw_tree, tree_title

__all__ = ["TRIAL_EXPORT_FILES", "ExportReport", "export_trial"]

#: The files ``export_trial`` writes; a re-export into the same folder replaces (or removes) each.
TRIAL_EXPORT_FILES = ("arch.json", "tree.png", "weights.safetensors")


@dataclass(frozen=True)
class ExportReport:
    """What ``mtnas export`` wrote."""

    files: dict[str, Path]
    trial: int | None
    tree: str
    facts: dict[str, Any]

    def render(self) -> str:
        head = f"exported trial {self.trial}: {self.tree}" if self.trial is not None else f"exported {self.tree}"
        shown = {"delta_m": lambda v: f"delta-m {v:+.2f}%", "flops": lambda v: f"FLOPs {v:,}",
                 "params": lambda v: f"params {v:,}"}
        facts = ", ".join(shown[k](v) if k in shown else f"{k} {v}" for k, v in self.facts.items())
        return "\n".join([head + (f" ({facts})" if facts else "")] + [f"  {k}: {p}" for k, p in self.files.items()])

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.trial, "tree": self.tree, "facts": self.facts,
                "files": {k: str(p) for k, p in self.files.items()}}


def export_trial(run_ref: str | Path, out_dir: str | Path, *, trial: int | None = None, pick: str = "trade-off",
                 with_weights: bool = False) -> ExportReport:
    """Write the arch.json and tree.png of one trial of a run (and its inherited weights).

    ``run_ref`` is a run folder or ``STORAGE_URL#STUDY``: the trial's files come from the folder
    when it is here, else from the study's artifact store. The tree is the study's record of the
    trial; an arch.json that holds another (replaced or edited) is refused.
    """
    run = SearchRun.open(run_ref)
    study = load_study(run)
    chosen = choose_trial(study, trial, pick)
    arch_path = trial_file(run, study, chosen, "arch.json")
    if arch_path is None:
        raise MtnasError(f"trial {chosen.number} has no arch.json (it did not complete); see 'mtnas trials'")
    arch = Architecture.load(arch_path)
    tree = trial_tree(study, chosen)  # what the trial evaluated, as the study records it
    if arch.tree != tree:
        raise MtnasError(f"{arch_path}: its tree ({arch.tree.describe()}) is not the one trial {chosen.number} "
                         f"evaluated ({tree.describe()}, in the study): the file was replaced or edited; restore it "
                         "(or export with 'STORAGE_URL#STUDY' to read it from the study's artifact store)")
    out = Path(out_dir)
    attrs = chosen.user_attrs
    with replace_files(out, TRIAL_EXPORT_FILES) as stage:  # a failure leaves `out` as it was
        files = {"arch": arch.save(stage / "arch.json")}
        files["picture"] = draw_tree(arch.tree, stage / "tree.png", title=tree_title(
            f"{run.name} trial {chosen.number}", params=attrs.get("params"), flops=attrs.get("flops"),
            delta_m=attrs.get("delta_m")))
        if with_weights:
            inherited = trial_file(run, study, chosen, INHERITED)
            if inherited is None:
                kind = attrs.get("fixed_tree") or "sampled"
                raise MtnasError(
                    f"trial {chosen.number} ({kind}) has no inherited weights: only trials of the differentiable "
                    "strategy train a supernet; export without --with-weights and retrain from scratch"
                )
            load_weights(inherited, tree_key=arch.tree.key)  # checks format, tree and checksum before copying
            shutil.copyfile(inherited, stage / "weights.safetensors")
            files["weights"] = stage / "weights.safetensors"
    files = {k: out / Path(p).name for k, p in files.items()}
    facts = {k: attrs[k] for k in ("delta_m", "flops", "params") if k in attrs}
    return ExportReport(files, chosen.number, arch.tree.describe(), facts)
