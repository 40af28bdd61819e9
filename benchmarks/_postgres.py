"""A throwaway PostgreSQL server on loopback, for the distributed tests and the chaos benchmark.

The server runs from Debian's package (``initdb``/``pg_ctl``); both refuse to run as root, so as
root they run as the package's ``postgres`` user. It listens on 127.0.0.1 at a free port, trusts
local connections, and is stopped and deleted on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["postgres_bindir", "throwaway_postgres"]


def postgres_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl`` (None when PostgreSQL is not installed)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@contextlib.contextmanager
def throwaway_postgres(bindir: Path) -> Iterator[str]:
    """Start a server; yield its URL as the README writes them (``postgresql://postgres@127.0.0.1:PORT/postgres``)."""
    data = Path(tempfile.mkdtemp(prefix="mtnas-pg-"))
    as_root = os.geteuid() == 0
    if as_root:  # initdb and postgres refuse root: run them as the package's postgres user
        shutil.chown(data, "postgres", "postgres")

    def run(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        subprocess.run(full, check=True, capture_output=True)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        run(str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres")
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200"
        run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(data, ignore_errors=True)
