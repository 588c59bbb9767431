#!/usr/bin/env bash
# GPU acceptance in one command (at most ~4 minutes on an H100/H200): overhead of the infer path
# vs bare generate (GPT-2 and Mistral-7B architectures, random weights, bf16), J/token
# repeatability per task shape, tick-aligned vs random-phase windows, the prefill/decode split
# (decode's share of time and energy, phases measured in their own windows). Prints one table of
# figures against goals and writes benchmarks/results/<gpu-name>-<date>.json.
#
# OBSERVE MODE ONLY: never locks clocks, changes power limits or resets the GPU; any argument
# that asks for clock or power control is refused. Needs only torch, transformers,
# nvidia-ml-py, pandas, scipy, statsmodels and PyYAML (no Hydra, DVC, datasets, evaluate,
# codecarbon; no hub access; no `dvc repro` beforehand).
#
#   bash benchmarks/gpu_acceptance.sh                 # on the GPU host
#   bash benchmarks/gpu_acceptance.sh --stand-in      # CPU, tiny models, simulated GPU (< 1 min)
#   LLM_ENERGY_STAND_IN=1 bash benchmarks/gpu_acceptance.sh
# Exit status: 0 all goals met, 3 some goal failed or was skipped, anything else an error.
set -euo pipefail
cd "$(dirname "$0")/.."
# Only the script's own options pass; anything else (gpu.control=lock, gpu.freq=..., a power
# limit) is refused before Python starts.
value_of=""
for arg in "$@"; do
  if [ -n "$value_of" ]; then value_of=""; continue; fi
  case "$arg" in
    --stand-in | -h | --help | --budget-s=* | --results-dir=*) ;;
    --budget-s | --results-dir) value_of="$arg" ;;
    *)
      echo "refusing '$arg': the acceptance run is observe-only and takes no overrides" \
        "(options: --stand-in, --budget-s S, --results-dir DIR)" >&2
      exit 2 ;;
  esac
done
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export TQDM_DISABLE=1  # the infer loop's progress bar would interleave with the table
export LLM_ENERGY_STATE_DIR="${LLM_ENERGY_STATE_DIR:-${TMPDIR:-/tmp}/llm-energy-state}"
exec "${PYTHON:-python3}" benchmarks/acceptance.py "$@"
