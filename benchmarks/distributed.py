"""One search's trainings split over the study's workers, each unit trained once.

The default ``mtnas search`` of a space is created (``--workers 0``: the study, its baselines,
nothing searched), then ``--workers`` ``mtnas worker`` processes join it, each with its own cache
folder (``MTNAS_CACHE_DIR``), as on machines that share no disk: whatever trained evidence they
share goes through the study's storage (``mtnas.study.StudyStore``). Printed: each worker's
units, the units in the study, any unit trained twice, and the wall time of the workers; with
``--compare``, the same search with one worker first, side by side.

    python -m benchmarks.distributed [--space digit_gratings] [--workers 2] [--trials 8] [--compare] [--strategy pool] [--budget B]

Last line: ``distributed: N units, each trained once: yes|no; wall 1 worker X s, W workers Y s``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna

from mtnas.study import evidence_study_name, open_storage, run_search, worker_command


def one_run(space: str, workers: int, trials: int, root: Path, strategy: str = "differentiable",
            budget: float | None = None) -> tuple[float, dict[int, int], int, int]:
    """Create the study, run ``workers`` workers with separate caches; (wall s, units per worker
    pid, units in the study, units trained more than once)."""
    os.environ["MTNAS_CACHE_DIR"] = str(root / "creator-cache")
    storage = f"journal:///{root / 'journal.log'}"
    if budget is not None:  # search.budget, for --strategy pool
        from mtnas.space import load_space

        space = load_space(space, overrides=[f"search.budget={budget}"])
    run_search(space, name="dist", trials=trials, runs_dir=root, workers=0, progress=False, storage=storage,
               strategy=strategy)
    start = time.perf_counter()
    procs = []
    for i in range(workers):
        env = {**os.environ, "MTNAS_CACHE_DIR": str(root / f"worker{i}-cache")}
        procs.append(subprocess.Popen(worker_command(storage, "dist", "cpu", threads=max(1, 2 // workers)), env=env))
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a worker failed: exit codes {codes}")
    evidence = optuna.load_study(study_name=evidence_study_name("dist"), storage=open_storage(storage))
    done = [t for t in evidence.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    per_pid = Counter(t.system_attrs.get("pid") for t in done)
    keys = Counter(t.system_attrs.get("unit") for t in done)
    study = optuna.load_study(study_name="dist", storage=open_storage(storage))
    candidates = Counter(t.user_attrs["tree_key"] for t in study.get_trials(deepcopy=False) if "kind" in t.user_attrs)
    if candidates:  # --strategy pool: the study's trials are the candidates
        print(f"{workers} worker(s): {len(candidates)} candidate trees as trials of the study, "
              f"{sum(n > 1 for n in candidates.values())} of them asked twice; "
              f"{sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))} "
              "complete trials (the references included)", flush=True)
    return wall, dict(per_pid), len(keys), sum(n > 1 for n in keys.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digit_gratings")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--compare", action="store_true", help="run the same search with one worker first")
    parser.add_argument("--strategy", default="differentiable",
                        help="the study's strategy; pool: its trials are one budgeted search's candidates")
    parser.add_argument("--budget", type=float, default=None, help="search.budget (trainings), for --strategy pool")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    walls = {}
    for workers in ([1] if args.compare else []) + [args.workers]:
        with tempfile.TemporaryDirectory() as tmp:
            wall, per_pid, units, twice = one_run(args.space, workers, args.trials, Path(tmp), args.strategy,
                                                  args.budget)
        walls[workers] = wall
        print(f"{workers} worker(s), separate cache folders: {wall:.1f} s; units trained per process "
              f"{sorted(per_pid.values(), reverse=True)} (the creator's baselines included); {units} units in the "
              f"study; trained more than once: {twice}", flush=True)
    one = f"1 worker {walls[1]:.1f} s, " if 1 in walls and args.workers != 1 else ""
    print(f"distributed: {units} units, each trained once: {'yes' if twice == 0 else 'no'}; wall {one}"
          f"{args.workers} workers {walls[args.workers]:.1f} s")


if __name__ == "__main__":
    main()
