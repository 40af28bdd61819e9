"""``mtnas export ARCH.json --format``: a trained model leaves as a deployment format.

From an ``arch.json`` with trained weights (``mtnas retrain`` writes them), ``--format onnx``
writes ``DIR/model.onnx`` (one input ``input``, one output per task, named after it, batch size
free) and ``--format torch-export`` writes ``DIR/model.pt2`` (``torch.export``), with the
``arch.json`` and ``io.json`` (the signature). The folder is written all or nothing, and a new
export replaces every file of an earlier one (``mtnas.core.replace_files``).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from mtnas.core import MtnasError, Registry, __version__, atomic_write_text, replace_files
from mtnas.export._trial import ExportReport
from mtnas.model import arch_space, load_model
from mtnas.tree import Architecture

__all__ = ["DEPLOY_FILES", "DEPLOY_FORMATS", "export_model"]

#: What ``export_model`` writes into its folder (one model file of the format, its tree, its signature).
DEPLOY_FILES = ("model.onnx", "model.pt2", "arch.json", "io.json")


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


#: ``--format``: a writer of one deployment format.
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
    space = arch_space(arch, str(arch_path))
    module = _TaskTuple(load_model(arch, weights), space.task_names).eval()
    out = Path(out_dir)
    example = torch.zeros(2, *space.input_shape)
    with replace_files(out, DEPLOY_FILES) as stage:  # all or nothing; the files of an earlier export go
        path = writer(module, example, stage)
        arch.save(stage / "arch.json")
        signature = {"input": {"name": "input", "shape": ["batch", *space.input_shape]},
                     "outputs": list(space.task_names), "format": fmt, "mtnas_version": __version__}
        atomic_write_text(stage / "io.json", json.dumps(signature, indent=1) + "\n")
    return ExportReport({fmt: out / path.name, "arch": out / "arch.json", "io": out / "io.json"}, None,
                        arch.tree.describe(), {})
