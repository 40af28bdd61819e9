"""Whether the process behind a claim or a trial is still there."""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["process_ended", "process_gone", "process_gone_on", "process_start"]


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` of this host has ended (a zombie, killed but not yet waited for, has too)."""
    if pid < 1:  # 0 and negative ids name process groups, never one process
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any process id
        return True
    except PermissionError:  # it exists, as another user's process
        return False
    try:  # Linux: a zombie still answers signal 0; its state in /proc says it is dead
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def process_start(pid: int) -> int | None:
    """When process ``pid`` of this host started, in clock ticks after boot (Linux's
    ``/proc/PID/stat``), or None where that cannot be read. A process id is reused once its
    process ends; the pair (pid, start) names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rpartition(")")[2].split()[19])  # field 22, counted after the command name (field 2)
    except (OSError, ValueError, IndexError):
        return None


def process_gone_on(host: object, pid: object) -> bool:
    """Whether ``pid`` on ``host`` is known to have ended: only this host's processes can be seen,
    and this process is never gone."""
    if host != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool) or pid == os.getpid():
        return False
    return process_gone(pid)


def process_ended(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` of this host is not the one that started at ``start`` (``process_start``)
    any more: it ended, or its id now names another process. With ``start`` None (where start times
    cannot be read), whether it ended."""
    if process_gone(pid):
        return True
    return start is not None and process_start(pid) not in (None, start)
