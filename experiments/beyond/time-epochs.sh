#!/bin/bash
# Wall-clock epochs of a study's configurations side by side, for a quiet machine: ROUNDS rounds, each
# training every configuration for EPOCHS epochs in turn (2 threads), then `meprop compare` over the
# rounds with the times from epoch TIMES_FROM on (after a dense warm-up epoch):
#   time-epochs.sh STUDY ROUNDS EPOCHS TIMES_FROM "COMMON OPTIONS" NAME="options" ...
# Runs go to experiments/beyond/STUDY/timing/round-R/NAME (metrics and summaries only are kept).
set -euo pipefail
cd "$(dirname "$0")/../.."
cli=${MEPROP:-dotnet src/MeProp.Cli/bin/Release/net10.0/MeProp.Cli.dll}
study=$1; rounds=$2; epochs=$3; from=$4; common=$5; shift 5
root=experiments/beyond/$study/timing
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for round in $(seq 1 "$rounds"); do
  for config in "$@"; do
    name=${config%%=*}; options=${config#*=}
    # shellcheck disable=SC2086 # the options are words
    $cli train $common $options --threads 2 --seed 1 --epochs "$epochs" --out "$scratch/$round-$name" > /dev/null
    mkdir -p "$root/round-$round/$name"
    cp "$scratch/$round-$name/metrics.jsonl" "$scratch/$round-$name/summary.json" "$root/round-$round/$name/"
  done
done
groups=()
for config in "$@"; do
  name=${config%%=*}; dirs=""
  for round in $(seq 1 "$rounds"); do dirs="$dirs${dirs:+,}$root/round-$round/$name"; done
  groups+=(--group "$name=$dirs")
done
$cli compare "${groups[@]}" --out "$root" --times-from-epoch "$from" --title "$study: epoch times side by side ($rounds rounds)" \
  --timing-note "Each round trained every configuration for $epochs epochs, one after another, 2 threads, seed 1, on a quiet machine ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores); times from epoch $from on. Accuracies here are of these short runs, not the study's."
