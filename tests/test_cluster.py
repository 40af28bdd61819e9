"""Search across machines that share no disk: the study in a real PostgreSQL server, the trial
files in an S3-compatible bucket, two workers in separate folders (one killed mid-trial), then
``trials``, ``export``, ``plot`` and ``report`` from a third folder given only the storage URL.

The bucket is moto's S3 server (``moto.server.ThreadedMotoServer``) on loopback: it implements
the S3 REST API that boto3 (and so Optuna's ``Boto3ArtifactStore``) speaks, so the client calls
are exactly those against AWS S3 or MinIO; only the endpoint differs (``AWS_ENDPOINT_URL``).
Each worker runs with its own working directory, HOME, TMPDIR and cache, so nothing can pass
between them through a path. Skips without PostgreSQL or moto locally; fails with CI=true.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests._wait import wait_until
from tests.test_postgres import _unavailable, postgres_url  # noqa: F401  (the fixture)
from tests.test_study import _space


@pytest.fixture
def s3_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        _unavailable("moto[server] and boto3 (test extras) are not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket="trials")
        yield env
    finally:
        server.stop()


def _machine(root: Path, s3: dict[str, str]) -> dict[str, str]:
    """The environment of one 'machine': its own folder as cwd, HOME, TMPDIR and mtnas cache."""
    for sub in ("home", "tmp", "cache"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {**os.environ, **s3, "HOME": str(root / "home"), "TMPDIR": str(root / "tmp"),
            "MTNAS_CACHE_DIR": str(root / "cache"), "MTNAS_HEARTBEAT": "1,30"}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_workers_on_machines_that_share_no_disk(tmp_path: Path, postgres_url: str,  # noqa: F811
                                                 s3_env: dict[str, str]) -> None:
    mtnas = [sys.executable, "-m", "mtnas"]
    creator, a, b, reader = (tmp_path / n for n in ("creator", "worker-a", "worker-b", "reader"))
    creator.mkdir()
    space = _space(creator)
    create = subprocess.run(
        [*mtnas, "search", str(space), "--name", "cl", "--storage", postgres_url, "--artifacts", "s3://trials",
         "--trials", "6", "--workers", "0", "--strategy", "sampled", "--quiet"],
        cwd=creator, env=_machine(creator, s3_env), capture_output=True, text=True, timeout=300)
    assert create.returncode == 0, create.stderr
    worker = [*mtnas, "worker", "--storage", postgres_url, "--study", "cl", "--quiet"]
    procs = {name: subprocess.Popen(worker, cwd=root, env=_machine(root, s3_env), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, root in (("a", a), ("b", b))}
    study = optuna.load_study(study_name="cl", storage=postgres_url)

    def running_trial_of_a() -> int | None:
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.user_attrs.get("pid") == procs["a"].pid:
                return t.number + 1  # truthy for trial 0 too
        return None

    killed = wait_until(running_trial_of_a, timeout=240, interval=0.1, what="a trial of worker a") - 1
    os.kill(procs["a"].pid, signal.SIGKILL)
    procs["a"].wait()
    out, err = procs["b"].communicate(timeout=400)
    assert procs["b"].returncode == 0, err

    study = optuna.load_study(study_name="cl", storage=postgres_url)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 6  # exactly the requested count, the killed trial retried
    assert study.trials[killed].state == optuna.trial.TrialState.FAIL
    assert [t.user_attrs.get("retry_of") for t in study.trials].count(killed) == 1
    assert all({"arch.json", "metrics.json", "tree.png"} <= set(t.user_attrs["artifacts"]) for t in complete)
    # the workers wrote nothing in the creator's folder, and nothing but their caches in their own
    # (and the scratch folder in TMPDIR of the one SIGKILLed, which no process can remove as it dies)
    assert not (creator / "runs" / "cl" / "trials").exists()
    for root, scratch in ((a, ("tmp/mtnas-worker-cl-",)), (b, ())):
        assert all(f.startswith(("cache/", "home/", *scratch)) for f in _files(root)), _files(root)

    ref = f"{postgres_url}#cl"
    env = _machine(reader, s3_env)
    for args in (["trials", ref], ["export", ref, "-o", "out"], ["plot", ref, "-o", "tree.png"],
                 ["report", ref, "-o", "report.html"]):
        proc = subprocess.run([*mtnas, *args], cwd=reader, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (args, proc.stderr)
    assert (reader / "out" / "arch.json").is_file() and (reader / "out" / "tree.png").is_file()
    assert (reader / "tree.png").stat().st_size > 1000
    page = (reader / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "(read from the storage)" in page
