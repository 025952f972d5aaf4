#!/bin/bash
# The forward from sparse inputs on real data: the paper's network on MNIST (first 10,000 training
# images, 2 epochs, seed 1, 2 threads, exact sparsity auto), dense and meProp 5% d0.6, at batch 10 and
# 100, with the code before the change (commit 7458e9f) and after it (a5b358a), interleaved over ROUNDS
# rounds on a quiet machine. Each binary: dotnet publish src/MeProp.Cli -c Release -o DIR at that commit.
#   run.sh OLD_DIR NEW_DIR ROUNDS
set -euo pipefail
cd "$(dirname "$0")"
old=$1; new=$2; rounds=$3
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for round in $(seq 1 "$rounds"); do
  for batch in 10 100; do
    for config in dense="" top5-d0.6="--topk 0.05 --decay 0.6"; do
      name=${config%%=*}; options=${config#*=}
      for code in old new; do
        dir=$old; [ "$code" = new ] && dir=$new
        run=$code-$name-b$batch/round-$round
        # shellcheck disable=SC2086 # the options are words
        dotnet "$dir/MeProp.Cli.dll" train $options --batch-size "$batch" --max-train 10000 --epochs 2 --threads 2 --seed 1 --out "$scratch/$run" > /dev/null
        mkdir -p "$run"
        cp "$scratch/$run/metrics.jsonl" "$scratch/$run/summary.json" "$run/"
      done
    done
  done
done
