"""Whether the process behind a claim or a trial is still there."""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["process_gone", "process_gone_on"]


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` of this host has ended (a zombie, killed but not yet waited for, has too)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's process
        return False
    try:  # Linux: a zombie still answers signal 0; its state in /proc says it is dead
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def process_gone_on(host: object, pid: object) -> bool:
    """Whether ``pid`` on ``host`` is known to have ended: only this host's processes can be seen,
    and this process is never gone."""
    if host != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool) or pid == os.getpid():
        return False
    return process_gone(pid)
