"""How many CPU threads torch uses in this process (``--threads N``, ``MTNAS_THREADS``).

Torch's own default is one thread per logical CPU in every process. On a busy machine, or with
several local search workers, that oversubscribes the cores: each process's threads wait on the
others', and a run that takes 1.3 s with one thread takes 8-19 s. mtnas therefore sets the count
itself, from the first of:

1. ``--threads N`` (an explicit count for this process);
2. the environment variable ``MTNAS_THREADS`` (what a search passes to its local workers);
3. ``OMP_NUM_THREADS``, OpenMP's usual setting, when the user set it (``torchrun`` sets it too);
4. the physical cores this process may use, divided among the local processes that share them
   (``--workers`` of a search, or a ``torchrun`` launch's processes per machine), at least 1.

Physical cores are counted from Linux's CPU topology (hyperthreads of one core count once),
within the process's CPU affinity and a cgroup CPU quota (a container's ``--cpus``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from mtnas.core import MtnasError

__all__ = ["THREADS_ENV", "Threads", "cpu_threads", "physical_cores", "use_cpu_threads"]

#: The environment variable that sets the thread count (below ``--threads``).
THREADS_ENV = "MTNAS_THREADS"
_MAX_THREADS = 4096


@dataclass(frozen=True)
class Threads:
    """A thread count and where it came from (``--threads``, ``MTNAS_THREADS``, ... or ``default``)."""

    count: int
    source: str

    def to_dict(self) -> dict[str, int | str]:
        return {"threads": self.count, "threads_from": self.source}


def _usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max``: "200000 100000" is 2), or None."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def physical_cores() -> int:
    """Physical cores this process may run on (hyperthreads of a core count once), at least 1."""
    cpus = _usable_cpus()
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology / "physical_package_id").read_text().strip() + ":" +
                      (topology / "core_id").read_text().strip())
        except OSError:
            cores.add(str(cpu))  # no topology (not Linux, or hidden): a CPU is a core
    count = len(cores) or 1
    quota = _cgroup_quota()
    return max(1, min(count, math.ceil(quota))) if quota else count


def _from_text(text: str, where: str) -> int:
    stripped = text.strip()
    if not stripped.isdigit() or not 1 <= int(stripped[:6]) <= _MAX_THREADS:
        raise MtnasError(f"{where}={text[:20]!r}: expected a whole number of threads from 1 to {_MAX_THREADS}")
    return int(stripped)


def cpu_threads(requested: int | None = None, *, workers: int = 1) -> Threads:
    """The thread count for one process of ``workers`` local ones (see the module docstring)."""
    if requested is not None:
        if not 1 <= requested <= _MAX_THREADS:
            raise MtnasError(f"--threads: expected 1 to {_MAX_THREADS}, got {requested}")
        return Threads(requested, "--threads")
    if os.environ.get(THREADS_ENV, "").strip():
        return Threads(_from_text(os.environ[THREADS_ENV], THREADS_ENV), THREADS_ENV)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and 1 <= int(omp[:6]) <= _MAX_THREADS:  # anything else ("4,2") is OpenMP's business
        return Threads(int(omp), "OMP_NUM_THREADS")
    return Threads(max(1, physical_cores() // max(1, workers)), "default")


def use_cpu_threads(requested: int | None = None, *, workers: int = 1) -> Threads:
    """Resolve the thread count (:func:`cpu_threads`) and give it to torch in this process."""
    import torch

    threads = cpu_threads(requested, workers=workers)
    if torch.get_num_threads() != threads.count:
        torch.set_num_threads(threads.count)
    return threads
