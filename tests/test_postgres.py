"""The distributed engine for real: a PostgreSQL server on loopback and two `mtnas worker`s.

Skips where PostgreSQL is not installed locally; fails when CI=true (`.ci/run` installs it), so a
missing install step cannot pass silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests.test_study import _space


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: .ci/run must install it")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    bindir = _bindir()
    if bindir is None:
        _unavailable("PostgreSQL (initdb) is not installed")
    try:
        import psycopg  # noqa: F401  (the driver of postgresql:// URLs, the postgres extra)
    except ImportError:
        _unavailable("psycopg (the postgres extra) is not installed")
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
    run(str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"  # the README's form: no driver in the URL
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_share_a_postgres_study(tmp_path: Path, postgres_url: str) -> None:
    space = _space(tmp_path)
    mtnas = [sys.executable, "-m", "mtnas"]
    create = subprocess.run(
        [*mtnas, "search", str(space), "--name", "pg", "--storage", postgres_url, "--trials", "5", "--workers", "0",
         "--strategy", "sampled", "--runs-dir", str(tmp_path), "--quiet"],
        capture_output=True, text=True,
    )
    assert create.returncode == 0, create.stderr
    workers = [
        subprocess.Popen([*mtnas, "worker", "--storage", postgres_url, "--study", "pg", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers)))
    completed = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(completed) == 5  # exactly: a trial not needed any more is not run
