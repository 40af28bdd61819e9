"""A Ctrl-C kept for after a library call that would swallow it.

Some native code turns a pending ``KeyboardInterrupt`` into an error of its own: an interrupt that
arrives while safetensors hands tensors to torch comes out as ``RuntimeError("could not determine
the shape of object type ...")``, which a reader takes for a damaged file, so the command goes on
as if nothing was pressed. Around such a call SIGINT is only recorded, and raised as
``KeyboardInterrupt`` once the call is over, whatever it returned or raised.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["interrupts_deferred"]


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Record SIGINT during the block and raise ``KeyboardInterrupt`` after it (in the main thread,
    with Python's own handler in place; elsewhere the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    pressed: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if pressed:
            raise KeyboardInterrupt from None
