"""Chaos, short: four `mtnas worker` processes on one PostgreSQL study, SIGKILLed at random and
restarted; the study ends with exactly N completed trials, none RUNNING, every completed trial's
files in the artifact store, and `mtnas trials` agreeing with the storage.

``python -m benchmarks.chaos`` is the longer run (more trials, more kills). Skips without
PostgreSQL locally; fails with CI=true.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos import run_chaos
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
