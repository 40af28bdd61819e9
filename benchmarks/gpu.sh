#!/usr/bin/env bash
# GPU figures in one script (a few minutes on one H100/H200): retrain samples/s for fp32, bf16 and
# bf16 + torch.compile with the data on the device and in pinned host memory, then the supernet's
# step-time ratios and peak memory on CUDA. `--dry-run` runs the same code on the CPU at a tiny
# size (CI runs it: tests/test_benchmarks.py), so the script cannot rot between GPU sessions.
#
#   bash benchmarks/gpu.sh [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ "${1:-}" = "--dry-run" ]; then
  "$PY" -m benchmarks.gpu_retrain --dry-run
  "$PY" benchmarks/supernet_speed.py --device cpu --steps 2 --batch 16 --skip-cost
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  "$PY" -m benchmarks.gpu_retrain --device cuda --epochs 4
  "$PY" benchmarks/supernet_speed.py --device cuda --steps 50 --batch 256
fi
