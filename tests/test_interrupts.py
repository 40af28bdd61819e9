"""A Ctrl-C during a weights read is a Ctrl-C, not a damaged file (native code swallows it)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from mtnas.core import MtnasError, interrupts_deferred
from mtnas.model import read_safetensors, save_weights


class _Swallowing:
    """safetensors as a Ctrl-C finds it: the interrupt arrives, and the native code reports an error of its own."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __enter__(self) -> _Swallowing:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def metadata(self) -> dict:
        return {}

    def keys(self) -> list[str]:
        return ["w"]

    def get_tensor(self, key: str) -> torch.Tensor:
        try:  # what the native code does: the interrupt is taken, and an error of its own raised
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        raise RuntimeError("could not determine the shape of object type 'torch.storage.UntypedStorage'")


def test_a_ctrl_c_during_a_weights_read_is_raised_after_it(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, {"w": torch.ones(2)}, tree_key="t")
    monkeypatch.setattr("safetensors.safe_open", _Swallowing)
    with pytest.raises(KeyboardInterrupt):
        read_safetensors(path, "w")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's handler is back
    monkeypatch.undo()
    assert read_safetensors(path, "w")[0]["w"].tolist() == [1.0, 1.0]  # no interrupt: read as ever


def test_without_an_interrupt_the_block_raises_what_it_raised() -> None:
    with pytest.raises(MtnasError, match="damaged"), interrupts_deferred():
        raise MtnasError("damaged")
    seen: list[BaseException | None] = []

    def elsewhere() -> None:  # not the main thread: no handler can be set there, the block just runs
        try:
            with interrupts_deferred():
                seen.append(None)
        except BaseException as exc:  # noqa: BLE001
            seen.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [None]
