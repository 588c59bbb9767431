#!/usr/bin/env bash
# Issue 3's GPU check in one call, for a host with an NVIDIA GPU and no DVC/Hydra/datasets:
# GPT-2 and a Mistral-7B architecture with random weights, infer stage + overhead benchmark.
# OBSERVE MODE ONLY: never locks clocks, changes power limits or resets the GPU.
# Needs data/prepared (run `dvc repro prepare` here and carry it). Results go to $OUT.
#   MODELS="gpt2"  EXTRA="infer.max_items=1"  bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu_check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export LLM_ENERGY_STATE_DIR="${LLM_ENERGY_STATE_DIR:-${TMPDIR:-/tmp}/llm-energy-state}"
read -r -a extra <<< "${EXTRA:-}"
for model in ${MODELS:-gpt2 mistral_7b}; do
  export LLM_ENERGY_PARAMS="benchmarks/gpu_check/params_${model}.yaml"
  if ! grep -q "^  control: observe$" "$LLM_ENERGY_PARAMS" || printf '%s\n' "${extra[@]}" | grep -q "gpu.control"; then
    echo "refusing: $LLM_ENERGY_PARAMS must use gpu.control=observe on a lent GPU" >&2
    exit 3
  fi
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv > "$OUT/nvidia_smi_${model}.csv" 2>/dev/null || true
  python stages/model.py "${extra[@]}"
  python stages/infer.py "${extra[@]}" 2>&1 | grep -v "^infer:" | tee "$OUT/infer_${model}.log"
  cp data/infer/requests.jsonl "$OUT/requests_${model}.jsonl"
  cp data/infer/run.json "$OUT/run_${model}.json"
  python benchmarks/overhead.py "${extra[@]}" --rounds 3 --items 4 --tokens 64 --out "$OUT/overhead_${model}.json" \
    2>&1 | grep -v "^infer:" | tail -4
done
python benchmarks/gpu_summary.py "$OUT"
