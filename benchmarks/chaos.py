"""Chaos: ``mtnas worker`` processes on one PostgreSQL study, killed at random and restarted.

``python -m benchmarks.chaos [--trials 24] [--workers 4] [--chaos-minutes 3] [--every 2 8]`` starts
a throwaway PostgreSQL server on loopback, creates a study (``mtnas search ... --workers 0``, the
trial files in a folder artifact store), and keeps ``--workers`` worker processes running on it.
For ``--chaos-minutes``, every 2-8 s (seeded) one worker at random is killed with SIGKILL (no
cleanup of any kind) and a fresh one started in its place; then the workers finish the study and
end by themselves. Then it checks what a user relies on:

- exactly ``--trials`` completed trials, none RUNNING (the killed workers' trials failed, their
  retries run by the survivors, and no more than needed);
- every completed trial's files (arch.json, metrics.json, tree.png) in the artifact store, read
  back by the ids the trial recorded;
- ``mtnas trials URL#STUDY --json`` lists the same trials, states and trees as the storage.

Its last line: ``chaos: N/N trials complete, 0 running, K kills, lost 0`` (lost: requested
trials that are not complete with all their files). ``tests/test_chaos.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml

from benchmarks._postgres import postgres_bindir, throwaway_postgres
from mtnas.cli import main as cli_main
from mtnas.space import BUILTIN_DIR
from mtnas.study import run_search, trial_label, worker_command

__all__ = ["ChaosResult", "chaos_space", "run_chaos"]

#: The files every completed trial must have in the artifact store.
REQUIRED = ("arch.json", "metrics.json", "tree.png")
STUDY = "chaos"


@dataclass
class ChaosResult:
    """What a chaos run did and found."""

    trials: int  # requested
    complete: int
    running: int
    failed: int  # trials failed by the kills (then retried)
    kills: int
    restarts: int
    worker_errors: list[str] = field(default_factory=list)  # exits other than 0 and the kills
    missing: dict[int, list[str]] = field(default_factory=dict)  # completed trial -> files not in the store
    cli_agrees: bool = False
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return self.trials - (self.complete - len(self.missing))

    def line(self) -> str:
        return (f"chaos: {self.complete}/{self.trials} trials complete, {self.running} running, {self.kills} kills, "
                f"lost {self.lost}")


def chaos_space(path: Path) -> Path:
    """A built-in space shrunk until a trial trains in about a second (so kills land mid-trial too)."""
    data = yaml.safe_load((BUILTIN_DIR / "digit_gratings.yaml").read_text())
    data["dataset"]["args"].update({"n_train": 128, "n_val": 64, "n_test": 64})
    data["training"].update({"epochs": 1, "batch_size": 64})
    data["search"].update({"epochs": 3, "warmup_epochs": 1, "proxy_epochs": 1})
    data["name"] = "chaos"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_chaos(url: str, folder: Path, *, trials: int, workers: int = 4, seed: int = 0, max_kills: int = 1000,
              chaos_minutes: float = 3.0, every: tuple[float, float] = (0.5, 4.0), minutes: float = 10.0,
              log: Callable[[str], object] = lambda line: None) -> ChaosResult:
    """Create the study, run the workers under kills, and check the outcome (see the module docstring).

    For ``chaos_minutes`` (or ``max_kills`` kills), at random moments ``every`` seconds apart, a
    random worker among those running a trial is killed (so the kill leaves a RUNNING trial
    behind); every fourth kill (seeded) takes any worker, one still starting or waiting
    included. Each killed worker is replaced at once. Then the workers finish the study;
    ``minutes`` bounds the whole run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MTNAS_HEARTBEAT": "1,20", "OMP_NUM_THREADS": "1", "MTNAS_PLUGINS": ""}
    run_search(str(chaos_space(folder / "space.yaml")), name=STUDY, storage=url, artifacts=str(folder / "artifacts"),
               trials=trials, workers=0, strategy="sampled", runs_dir=folder / "runs", progress=False)
    rng = random.Random(seed)
    start = time.monotonic()
    deadline, chaos_ends = start + 60 * minutes, start + 60 * chaos_minutes
    result = ChaosResult(trials=trials, complete=0, running=0, failed=0, kills=0, restarts=0)
    study = optuna.load_study(study_name=STUDY, storage=url)

    def launch() -> subprocess.Popen:
        return subprocess.Popen(worker_command(url, STUDY, "cpu"), cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def state() -> tuple[int, set[int]]:
        """Completed trials, and the processes running one."""
        now = study.get_trials(deepcopy=False)
        done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in now)
        return done, {t.user_attrs.get("pid") for t in now if t.state == optuna.trial.TrialState.RUNNING}

    alive = [launch() for _ in range(workers)]
    next_kill, anyone = time.monotonic() + rng.uniform(*every), rng.random() < 0.25
    try:
        while alive:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not finish in {minutes} minutes ({state()[0]}/{trials} complete)")
            for p in [p for p in alive if p.poll() is not None]:
                alive.remove(p)
                if p.returncode != 0:
                    result.worker_errors.append(f"exit {p.returncode}: {(p.stderr.read() or '').strip()[-1500:]}")
            chaos = result.kills < max_kills and time.monotonic() < chaos_ends
            if alive and chaos and time.monotonic() >= next_kill:
                done, busy = state()
                candidates = [] if done >= trials else alive if anyone else [p for p in alive if p.pid in busy]
                if candidates:
                    victim = rng.choice(candidates)
                    os.kill(victim.pid, signal.SIGKILL)
                    victim.wait()
                    alive.remove(victim)
                    alive.append(launch())
                    result.kills += 1
                    result.restarts += 1
                    log(f"  {time.monotonic() - start:6.1f}s  kill {result.kills}: worker {victim.pid} "
                        f"({'running a trial' if victim.pid in busy else 'starting or waiting'}), {done}/{trials} "
                        "complete")
                    next_kill, anyone = time.monotonic() + rng.uniform(*every), rng.random() < 0.25
            time.sleep(0.1)
    finally:
        for p in alive:  # on an error or Ctrl-C: no worker outlives the run
            p.kill()
            p.wait()
    result.seconds = time.monotonic() - start
    _check(result, url, folder)
    return result


def _check(result: ChaosResult, url: str, folder: Path) -> None:
    study = optuna.load_study(study_name=STUDY, storage=url)
    states = [t.state for t in study.trials]
    result.complete = states.count(optuna.trial.TrialState.COMPLETE)
    result.running = states.count(optuna.trial.TrialState.RUNNING)
    result.failed = states.count(optuna.trial.TrialState.FAIL)
    store = optuna.artifacts.FileSystemArtifactStore(str(folder / "artifacts"))
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        ids = t.user_attrs.get("artifacts") or {}
        missing = [name for name in REQUIRED if name not in ids]
        for name, artifact_id in ids.items():
            try:
                with store.open_reader(artifact_id) as f:
                    if not f.read(1):
                        missing.append(name)
            except Exception:  # not in the store
                missing.append(name)
        if missing:
            result.missing[t.number] = missing
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["trials", f"{url}#{STUDY}", "--json"])  # the command itself, in this process
    if code == 0:
        rows = json.loads(out.getvalue())
        # the command labels a tree from its stored partitions (never the stored text): a trial killed
        # between its two writes has a label only once its partitions are there
        stored = [(t.number, t.state.name, trial_label(study, t)) for t in study.trials]
        result.cli_agrees = [(r["trial"], r["state"], r["tree"]) for r in rows] == stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--chaos-minutes", type=float, default=3.0, help="how long workers are killed")
    parser.add_argument("--every", type=float, nargs=2, default=(2.0, 8.0), metavar=("MIN", "MAX"),
                        help="seconds between kills, drawn uniformly")
    parser.add_argument("--minutes", type=float, default=20.0, help="give up after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs") / "chaos-benchmark")
    args = parser.parse_args()
    bindir = postgres_bindir()
    if bindir is None:
        sys.exit("chaos: PostgreSQL (initdb) is not installed; apt-get install postgresql")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the server and the workers are stopped on the way out
    clear_previous(args.out)
    with throwaway_postgres(bindir) as url:
        print(f"chaos: {args.workers} workers on one PostgreSQL study of {args.trials} trials, SIGKILLed at random "
              f"every {args.every[0]:g}-{args.every[1]:g} s for {args.chaos_minutes:g} minutes", flush=True)
        result = run_chaos(url, args.out, trials=args.trials, workers=args.workers, seed=args.seed,
                           chaos_minutes=args.chaos_minutes, every=tuple(args.every), minutes=args.minutes,
                           log=lambda line: print(line, flush=True))
    print(f"restarts {result.restarts}, trials failed by the kills {result.failed} (each retried), worker errors "
          f"{len(result.worker_errors)}, completed trials missing files {len(result.missing)}, "
          f"'mtnas trials' agrees with the storage: {result.cli_agrees}, {result.seconds:.0f} s")
    for error in result.worker_errors:
        print(f"  worker {error}")
    print(result.line())


#: What ``run_chaos`` writes in its folder.
OUTPUTS = ("runs", "artifacts", "space.yaml")


def clear_previous(folder: Path) -> None:
    """Remove what an earlier run wrote in ``folder``: its study lived in a throwaway server that is
    gone, so its run folder and trial files are of no use, and ``mtnas search`` would refuse the name."""
    stale = [folder / name for name in OUTPUTS if (folder / name).exists()]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if stale:
        print(f"chaos: {folder}: the previous run's files removed (its study was in a throwaway server)", flush=True)


if __name__ == "__main__":
    main()
