#!/usr/bin/env bash
# On the login node, after the array: pull every experiment the array pushed, show them and
# compare them.   bash scripts/slurm/collect.sh [GIT_REMOTE]     (default: origin)
# Run it in a clone of the project whose DVC cache is the array's GRID_CACHE
# (`dvc cache dir --local /shared/dvc-cache`), or with a DVC remote the array pushed to.
set -euo pipefail

remote=${1:-origin}
# --no-cache: outputs are already in the shared cache (metrics are committed with each exp).
dvc exp pull --no-cache "$remote" --all-commits
dvc exp show --no-pager --drop '.*' \
  --keep '^(Experiment|energy\.j_per_token|perf\.latency_p50_s|config\.task|model\.name|gpu\.freq|sweep\.freqs_mhz)$'
llm-energy compare --all
