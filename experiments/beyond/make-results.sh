#!/bin/bash
# results.md, results.json and curves of each study from its committed runs (meprop compare), over the
# seeds every configuration of the study has so far:  make-results.sh STUDY "TITLE" "TIMING NOTE" CONFIG...
set -euo pipefail
cd "$(dirname "$0")/../.."
cli=${MEPROP:-dotnet src/MeProp.Cli/bin/Release/net10.0/MeProp.Cli.dll}
study=$1; title=$2; note=$3; shift 3
root=experiments/beyond/$study
seeds=""
for seed in 1 2 3 4 5; do
  all=yes
  for config in "$@"; do [ -f "$root/runs/$config/seed-$seed/metrics.jsonl" ] || all=no; done
  [ $all = yes ] && seeds="$seeds $seed"
done
[ -n "$seeds" ] || { echo "$study: no seed that every configuration has yet"; exit 0; }
groups=()
for config in "$@"; do
  dirs=""
  for seed in $seeds; do dirs="$dirs${dirs:+,}$root/runs/$config/seed-$seed"; done
  groups+=(--group "$config=$dirs")
done
$cli compare "${groups[@]}" --out "$root" --title "$title" --timing-note "$note"
