"""Chaos, short: four `mtnas worker` processes on one PostgreSQL study, SIGKILLed at random and
restarted; the study ends with exactly N completed trials, none RUNNING, every completed trial's
files in the artifact store, and `mtnas trials` agreeing with the storage.

``python -m benchmarks.chaos`` is the longer run (more trials, more kills). Skips without
PostgreSQL locally; fails with CI=true.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.chaos import clear_previous, run_chaos
from tests.test_postgres import postgres_url  # noqa: F401  (the fixture)


def test_killed_and_restarted_workers_lose_no_trial_and_run_none_twice(tmp_path: Path,
                                                                       postgres_url: str) -> None:  # noqa: F811
    kills: list[str] = []
    # kills 0.5-1.5 s apart: all three land while trials remain, however fast this machine trains them
    result = run_chaos(postgres_url, tmp_path, trials=6, workers=4, seed=3, max_kills=3, chaos_minutes=4, minutes=6,
                       every=(0.5, 1.5), log=kills.append)
    assert result.worker_errors == [], result
    assert result.kills == 3 and result.restarts == 3, (kills, result)
    assert result.failed >= 1, (kills, result)  # a kill left a RUNNING trial behind: failed, then retried
    assert result.complete == 6 and result.running == 0, result  # exactly N: none lost, none run twice
    assert result.missing == {} and result.lost == 0, result
    assert result.cli_agrees, result
    assert result.line() == "chaos: 6/6 trials complete, 0 running, 3 kills, lost 0"


def test_a_second_run_clears_what_the_first_wrote_and_nothing_else(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    # the first run's study lived in a throwaway server: its run folder would only make the name taken
    (tmp_path / "runs" / "chaos").mkdir(parents=True)
    (tmp_path / "artifacts" / "x").mkdir(parents=True)
    (tmp_path / "space.yaml").write_text("a: 1\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    clear_previous(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert capsys.readouterr().out.strip() == f"chaos: {tmp_path}: the previous run's files removed (its study was in a throwaway server)"
    clear_previous(tmp_path)  # nothing to clear: no line
    assert capsys.readouterr().out == ""
