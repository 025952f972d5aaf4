#!/bin/bash
# Trains each configuration of a study for each seed, resumably, and keeps the records:
#   run-configs.sh STUDY EPOCHS "SEEDS" NAME="train options" [NAME="train options" ...]
# Checkpoints go to ~/.cache/meprop/beyond/STUDY/NAME/seed-N (never committed); each run's
# metrics.jsonl and summary.json are copied to experiments/beyond/STUDY/runs/NAME/seed-N after it
# ends. A run with a checkpoint resumes; a finished one is skipped, and so is one that another
# run-configs.sh holds (a lock per run), so several may work through one study side by side.
# MEPROP overrides the command.
set -euo pipefail
cd "$(dirname "$0")/../.."
study=$1; epochs=$2; seeds=$3; shift 3
cli=${MEPROP:-dotnet src/MeProp.Cli/bin/Release/net10.0/MeProp.Cli.dll}
cache=${MEPROP_CACHE:-$HOME/.cache/meprop}/beyond/$study
for seed in $seeds; do
  for config in "$@"; do
    name=${config%%=*}; options=${config#*=}
    work=$cache/$name/seed-$seed
    published=experiments/beyond/$study/runs/$name/seed-$seed
    mkdir -p "$(dirname "$work")"
    exec 9> "$work.lock"
    if ! flock -n 9; then echo "$name seed $seed: running elsewhere"; continue; fi
    if [ -f "$work/summary.json" ] && [ "$(wc -l < "$work/metrics.jsonl")" -ge "$epochs" ]; then
      echo "$name seed $seed: done"
    elif [ -f "$work/last.safetensors" ]; then
      echo "$name seed $seed: resuming"
      # The data directory again: builds before commit 0b9fcb9 resume on MNIST when --data is not given.
      data=$(sed -n 's/.*--data \([^ ]*\).*/\1/p' <<< "$options")
      $cli train --resume "$work" --epochs "$epochs" ${data:+--data "$data"}
    else
      echo "$name seed $seed: training"
      rm -rf "$work"
      # shellcheck disable=SC2086 # the options are words
      $cli train $options --seed "$seed" --epochs "$epochs" --out "$work"
    fi
    mkdir -p "$published"
    cp "$work/metrics.jsonl" "$work/summary.json" "$published/"
    exec 9>&-
  done
done
