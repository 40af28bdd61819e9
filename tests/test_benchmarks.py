"""The GPU benchmark script runs in CI as a CPU dry run, so it cannot rot between GPU sessions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_sh_dry_run_prints_every_figure(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "MTNAS_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for data in ("device", "host"):
        for precision in ("fp32", "bf16"):
            assert any(f"data {data}" in line and precision in line and "samples/s" in line for line in out.splitlines())
    assert "(b)/(a) =" in out and "(a)/(c) =" in out  # the supernet's step ratios
