#!/bin/bash
# Copies the metrics of every study run in the cache, finished or not, to experiments/beyond/STUDY/runs/
# (run-configs.sh copies a run's records only when it ends), so partial progress can be committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${MEPROP_CACHE:-$HOME/.cache/meprop}/beyond
[ -d "$cache" ] || exit 0
for metrics in "$cache"/*/*/seed-*/metrics.jsonl; do
  [ -f "$metrics" ] || continue
  run=${metrics#"$cache"/}; run=${run%/metrics.jsonl}
  study=${run%%/*}; rest=${run#*/}
  target=experiments/beyond/$study/runs/$rest
  mkdir -p "$target"
  cp "$metrics" "$target/"
  if [ -f "$(dirname "$metrics")/summary.json" ]; then cp "$(dirname "$metrics")/summary.json" "$target/"; fi
done
