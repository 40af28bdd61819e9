"""Where training runs: the device, the numeric precision, and this process's place in ``torchrun``.

The device is always a parameter: ``auto`` picks cuda, then mps, then cpu. Precision ``auto`` is
bf16 autocast on a CUDA GPU with bf16 and fp32 elsewhere; fp16 (with a gradient scaler) runs on
CUDA only. Under ``torchrun`` each process takes one GPU (its local rank) with NCCL, or the CPU
with gloo.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mtnas.core import MtnasError, did_you_mean

__all__ = ["DTYPES", "PRECISIONS", "Dist", "autocast", "pick_device", "process_group", "resolve_precision",
           "select_device"]

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
#: The autocast dtype of each concrete precision (None: no autocast).
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cpu": True,
    }
    if requested == "auto":
        return torch.device(next(name for name, ok in available.items() if ok))
    kind = requested.split(":")[0]
    if kind not in available:
        raise MtnasError(f"unknown device {requested!r}; valid: auto, cuda, mps, cpu")
    if not available[kind]:
        raise MtnasError(f"device {requested!r} is not available on this machine; use --device auto or cpu")
    return torch.device(requested)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision (bf16, fp16, fp32) for ``device``; an unsupported pair is an error.

    ``auto`` is bf16 autocast on CUDA (when the GPU has bf16) and fp32 elsewhere. bf16 runs on
    CUDA and CPU; fp16 (with a gradient scaler) on CUDA only.
    """
    if precision not in PRECISIONS:
        raise MtnasError(f"unknown precision {precision!r}{did_you_mean(precision, PRECISIONS)}; valid: {', '.join(PRECISIONS)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return "bf16" if cuda_bf16 else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise MtnasError(f"--precision fp16 needs a CUDA device, this run is on {device.type}; use bf16 or fp32")
    if precision == "bf16" and (device.type == "mps" or device.type == "cuda" and not cuda_bf16):
        raise MtnasError(f"--precision bf16 is not supported on this {device.type} device; use fp16 or fp32")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to the dtype of a concrete ``precision`` on ``device`` (nothing for fp32)."""
    dtype = DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@dataclass(frozen=True)
class Dist:
    """This process's place in a ``torchrun`` launch (world_size 1 when launched alone)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            if world <= 1:
                return cls()
            return cls(world, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")))
        except (KeyError, ValueError) as exc:
            raise MtnasError(f"bad torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK): {exc}") from None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def pick_device(requested: str, dist: Dist) -> torch.device:
    """The device of this process: under ``torchrun``, the GPU of its local rank, or the CPU."""
    device = select_device(requested)
    if not dist.active:
        return device
    if device.type == "cuda":
        return torch.device("cuda", dist.local_rank)  # one GPU per local rank, whatever index was asked
    if device.type != "cpu":
        raise MtnasError(f"torchrun runs on cuda (nccl) or cpu (gloo), not {device.type}; pass --device cpu or cuda")
    return device


@contextlib.contextmanager
def process_group(dist: Dist, device: torch.device) -> Iterator[None]:
    """The process group of a ``torchrun`` launch (NCCL on CUDA, gloo on CPU); nothing when alone."""
    if not dist.active:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()
