"""Batches of a host-resident dataset, copied to the GPU while it computes.

A split too large for the accelerator stays in host memory. Selecting a batch by index would
make an ordinary (pageable) copy, and copying it to the GPU afterwards would wait for that copy:
the GPU idles. Instead each batch is gathered straight into one of two page-locked staging
buffers (``torch.index_select(..., out=)``) and sent to the device with ``non_blocking=True`` on
a side CUDA stream; the compute stream waits only for that copy's event, so batch ``i + 1``
travels while batch ``i`` trains. A staging buffer is reused only after the copy that read it
has finished. Without CUDA (CPU, tests) the same iterator yields plain index selections, so the
batches are the same ones in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mtnas.data import TaskData

__all__ = ["prefetch_batches"]


@dataclass
class _Staging:
    """One page-locked buffer per tensor of a batch, and the event of the copy that last read it."""

    buffers: dict[str, torch.Tensor]
    done: torch.cuda.Event | None = None


def _tensors(data: TaskData) -> dict[str, torch.Tensor]:
    out = {"inputs": data.inputs}
    out.update({f"target:{k}": v for k, v in data.targets.items()})
    out.update({f"mask:{k}": v for k, v in data.masks.items()})
    return out


def _rebuild(tensors: dict[str, torch.Tensor]) -> TaskData:
    targets = {k[len("target:"):]: v for k, v in tensors.items() if k.startswith("target:")}
    masks = {k[len("mask:"):]: v for k, v in tensors.items() if k.startswith("mask:")}
    return TaskData(tensors["inputs"], targets, masks)


def prefetch_batches(data: TaskData, batches: list[torch.Tensor], device: torch.device) -> Iterator[TaskData]:
    """The batches ``data.select(idx)`` for each index tensor of ``batches``, on ``device``.

    ``data`` lives in host memory; on CUDA the copies overlap compute (see the module docstring).
    """
    if device.type != "cuda" or not batches:
        for idx in batches:
            yield data.select(idx.cpu()).to(device)
        return
    source = _tensors(data)
    largest = max(len(idx) for idx in batches)
    staging = [_Staging({k: torch.empty((largest, *v.shape[1:]), dtype=v.dtype).pin_memory()
                         for k, v in source.items()}) for _ in range(2)]
    side = torch.cuda.Stream(device)

    def send(i: int) -> tuple[dict[str, torch.Tensor], torch.cuda.Event]:
        stage = staging[i % 2]
        if stage.done is not None:
            stage.done.synchronize()  # the copy that last read this buffer has finished
        idx = batches[i].cpu()
        host = {k: torch.index_select(v, 0, idx, out=stage.buffers[k][: len(idx)]) for k, v in source.items()}
        with torch.cuda.stream(side):
            moved = {k: v.to(device, non_blocking=True) for k, v in host.items()}
            stage.done = torch.cuda.Event()
            stage.done.record(side)
        return moved, stage.done

    pending = send(0)
    for i in range(len(batches)):
        moved, ready = pending
        if i + 1 < len(batches):
            pending = send(i + 1)  # the next copy starts before this batch is used
        torch.cuda.current_stream(device).wait_event(ready)
        for tensor in moved.values():  # allocated on the side stream, used on the compute stream
            tensor.record_stream(torch.cuda.current_stream(device))
        yield _rebuild(moved)
