"""The distributed engine for real: a PostgreSQL server on loopback and two `mtnas worker`s.

Skips where PostgreSQL is not installed locally; fails when CI=true (`.ci/run` installs it), so a
missing install step cannot pass silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from benchmarks._postgres import postgres_bindir, throwaway_postgres
from tests.test_study import _space


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: .ci/run must install it")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    bindir = postgres_bindir()
    if bindir is None:
        _unavailable("PostgreSQL (initdb) is not installed")
    try:
        import psycopg  # noqa: F401  (the driver of postgresql:// URLs, the postgres extra)
    except ImportError:
        _unavailable("psycopg (the postgres extra) is not installed")
    with throwaway_postgres(bindir) as url:
        yield url  # the README's form: no driver in the URL


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
    other = tmp_path / "other.yaml"  # another space under the study's name: refused, nothing joins
    other.write_text(space.read_text().replace("- diagonal\n", ""))
    join = subprocess.run([*mtnas, "search", str(other), "--name", "pg", "--storage", postgres_url, "--workers", "0",
                           "--runs-dir", str(tmp_path / "elsewhere"), "--quiet"], capture_output=True, text=True)
    assert join.returncode == 2 and "study 'pg' in postgresql://" in join.stderr, join.stderr
    assert "is a search of another space: 'tiny_digit_gratings'" in join.stderr
    assert len(optuna.load_study(study_name="pg", storage=postgres_url).trials) == len(numbers)
