"""``mtnas export``: a found tree leaves its run as files anyone can rebuild, or a trained model
leaves as a deployment format.

From a run folder, one Pareto trial is picked (``--trial N`` or ``--pick``) and written as
``DIR/arch.json`` (self-contained: the resolved space is inside), ``DIR/tree.png`` and, with
``--with-weights``, ``DIR/weights.safetensors``: the supernet weights that tree inherits, keyed as
``BranchedNet`` names its parameters, so ``mtnas retrain DIR/arch.json --init inherited`` loads them.

From an ``arch.json`` with trained weights (``mtnas retrain`` writes them), ``--format onnx``
writes ``DIR/model.onnx`` (one input ``input``, one output per task, named after it, batch size
free) and ``--format torch-export`` writes ``DIR/model.pt2`` (``torch.export``).

How ``--pick knee`` chooses: the Pareto trials' two objectives are scaled to [0, 1] over the front
(delta-m up is good, cost down is good); the knee is the trial farthest above the straight line
from the cheapest to the best-quality trial, i.e. the one that buys the most quality per unit of
cost relative to that trade-off. With fewer than three trials on the front it is the quality pick.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from mtnas import __version__
from mtnas.architecture import Architecture
from mtnas.branched import BranchedNet
from mtnas.checkpoint import load_into, load_weights
from mtnas.errors import MtnasError
from mtnas.io import atomic_write_text
from mtnas.registry import Registry
from mtnas.study import INHERITED, SearchRun, load_study, pareto
from mtnas.viz import draw_tree, tree_title

__all__ = ["DEPLOY_FORMATS", "PICKS", "ExportReport", "export_model", "export_trial", "knee"]

Trial = optuna.trial.FrozenTrial


def knee(points: Sequence[tuple[float, float]]) -> int:
    """Index of the knee of a front of (quality, cost) points: higher quality and lower cost are better.

    Both coordinates are scaled to [0, 1]; the knee is the point with the largest distance above
    the line from the cheapest point to the best-quality one (the "kneedle" rule).
    """
    if not points:
        raise ValueError("knee() of an empty front")
    best = max(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    if len(points) < 3:
        return best
    qs, cs = [p[0] for p in points], [p[1] for p in points]
    q_span, c_span = (max(qs) - min(qs)) or 1.0, (max(cs) - min(cs)) or 1.0
    scaled = [((q - min(qs)) / q_span, (c - min(cs)) / c_span) for q, c in points]
    cheap = min(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    (q0, c0), (q1, c1) = scaled[cheap], scaled[best]

    def above(i: int) -> float:  # signed distance (times a constant) above the cheap -> best line
        q, c = scaled[i]
        return (c1 - c0) * (q - q0) - (q1 - q0) * (c - c0)

    return max(range(len(points)), key=lambda i: (above(i), points[i][0]))


PICKS: Registry[Callable[[list[Trial]], Trial]] = Registry("pick")
PICKS.add("quality", lambda front: max(front, key=lambda t: t.values[0]))
PICKS.add("cheapest", lambda front: min(front, key=lambda t: (t.values[-1], -t.values[0])))
PICKS.add("knee", lambda front: front[knee([(t.values[0], t.values[-1]) for t in front])])


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


def export_trial(run_dir: str | Path, out_dir: str | Path, *, trial: int | None = None, pick: str = "knee",
                 with_weights: bool = False) -> ExportReport:
    """Write the arch.json and tree.png of one trial of a run (and its inherited weights)."""
    run = SearchRun(Path(run_dir))
    study = load_study(run)
    chosen = _choose(study, trial, pick)
    source = run.trial_dir(chosen.number)
    arch = Architecture.load(source / "arch.json")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"arch": arch.save(out / "arch.json")}
    attrs = chosen.user_attrs
    files["picture"] = draw_tree(arch.tree, out / "tree.png", title=tree_title(
        f"{run.root.name} trial {chosen.number}", params=attrs.get("params"), flops=attrs.get("flops"),
        delta_m=attrs.get("delta_m")))
    if with_weights:
        inherited = source / INHERITED
        if not inherited.is_file():
            kind = attrs.get("fixed_tree") or "sampled"
            raise MtnasError(
                f"trial {chosen.number} ({kind}) has no inherited weights: only trials of the differentiable "
                "strategy train a supernet; export without --with-weights and retrain from scratch"
            )
        load_weights(inherited, tree_key=arch.tree.key)  # checks format, tree and checksum before copying
        shutil.copyfile(inherited, out / "weights.safetensors")
        files["weights"] = out / "weights.safetensors"
    facts = {k: attrs[k] for k in ("delta_m", "flops", "params") if k in attrs}
    return ExportReport(files, chosen.number, arch.tree.describe(), facts)


def _choose(study: optuna.Study, number: int | None, pick: str) -> Trial:
    if number is not None:
        done = {t.number: t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
        if number not in done:
            valid = ", ".join(str(n) for n in sorted(done)) or "none"
            raise MtnasError(f"trial {number} is not a completed trial of this run; completed: {valid}")
        return done[number]
    front = pareto(study)
    if not front:
        raise MtnasError("the run has no completed trial yet; continue it with 'mtnas search --resume'")
    return PICKS.get(pick)(front)


# --- deployment formats ------------------------------------------------------------------------


class _TaskTuple(nn.Module):
    """The model with a tuple of task outputs in a fixed order (export formats want tensors, not dicts)."""

    def __init__(self, model: nn.Module, tasks: Sequence[str]) -> None:
        super().__init__()
        self.model, self.tasks = model, tuple(tasks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(x)
        return tuple(outputs[t] for t in self.tasks)


def _onnx(module: _TaskTuple, example: torch.Tensor, out: Path) -> Path:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise MtnasError("ONNX export needs the onnx extra: pip install 'mtnas[onnx]'") from None
    path = out / "model.onnx"
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about optional torchvision ops our models never use
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                module, (example,), str(path), input_names=["input"], output_names=list(module.tasks),
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, dynamo=True, verbose=False,
                external_data=False,  # one file: weights inside model.onnx (fine below 2 GB)
            )
    finally:
        exporter_log.setLevel(level)
    return path


def _torch_export(module: _TaskTuple, example: torch.Tensor, out: Path) -> Path:
    program = torch.export.export(module, (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    path = out / "model.pt2"
    torch.export.save(program, str(path))
    return path


DEPLOY_FORMATS: Registry[Callable[[_TaskTuple, torch.Tensor, Path], Path]] = Registry("format")
DEPLOY_FORMATS.add("onnx", _onnx)
DEPLOY_FORMATS.add("torch-export", _torch_export)


def export_model(arch_path: str | Path, out_dir: str | Path, *, fmt: str, weights: str | Path | None = None) -> ExportReport:
    """Serialise the trained model of ``arch_path`` as ``fmt`` (onnx, torch-export).

    ``weights`` defaults to ``retrain/weights.safetensors`` beside the arch.json (what ``mtnas
    retrain`` writes).
    """
    writer = DEPLOY_FORMATS.get(fmt)
    arch_path = Path(arch_path)
    arch = Architecture.load(arch_path)
    weights = Path(weights) if weights else arch_path.parent / "retrain" / "weights.safetensors"
    if not weights.is_file():
        raise MtnasError(
            f"{weights}: no trained weights; retrain first ('mtnas retrain {arch_path}') or pass --weights FILE"
        )
    space = arch.resolved_space()
    model = BranchedNet.from_space(arch.tree, space, pretrained=False)  # trained weights are loaded next
    load_into(model, load_weights(weights, tree_key=arch.tree.key), weights)
    module = _TaskTuple(model, space.task_names).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, *space.input_shape)
    path = writer(module, example, out)
    arch.save(out / "arch.json")
    signature = {"input": {"name": "input", "shape": ["batch", *space.input_shape]},
                 "outputs": list(space.task_names), "format": fmt, "mtnas_version": __version__}
    atomic_write_text(out / "io.json", json.dumps(signature, indent=1) + "\n")
    return ExportReport({fmt: path, "arch": out / "arch.json", "io": out / "io.json"}, None, arch.tree.describe(), {})

