#!/bin/bash
# A/B of the linear layer's dx at its input's non-zeros only: the paper CNN from trained weights on MNIST,
# batch 100, 2 threads, the commit before (BASE) and with it (NEW), three interleaved rounds, our side only.
# Usage: BASE=/path/to/base/MeProp.Cli.dll NEW=/path/to/new/MeProp.Cli.dll docs/bench/input-zeros/run.sh
set -e
out=$(dirname "$0")
W=${WEIGHTS:-$HOME/.cache/meprop/beyond/paper-mnist/dense/seed-1/best.safetensors}
for round in 1 2 3; do
  for side in base new; do
    dll=$BASE; [ $side = new ] && dll=$NEW
    dotnet "$dll" bench --batch 100 --threads 2 --topk 0.05 --decay 0.6 --batch-norm without --exact-sparsity auto \
      --steps 60 --warmup 10 --no-torchsharp --data "$HOME/.cache/meprop/mnist" --weights "$W" \
      --json "$out/$side-round$round.json" > "$out/$side-round$round.txt"
  done
done
