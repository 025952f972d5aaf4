#!/bin/bash
# Training step of ResNet-20 on Fashion-MNIST's input shape (1x28x28, batch 32, 2 threads, synthetic batches,
# our engine only) with top-k 5% d0.6 on one stage's convs, on all 18 block convs, and on all 20 convs with
# the shortcut convs (experiments/beyond/resnet20-fashion/which-layers: which of these train). Each call also
# times the dense step, so every figure has a dense one from the same call. Rounds FIRST_ROUND (default 1)
# to ROUNDS (default 2).
# Run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/bench/resnet20-fashion-stages
cli=${MEPROP:-dotnet src/MeProp.Cli/bin/Release/net10.0/MeProp.Cli.dll}
stage1="res1.conv1,res1.conv2,res2.conv1,res2.conv2,res3.conv1,res3.conv2"
stage2="res4.conv1,res4.conv2,res5.conv1,res5.conv2,res6.conv1,res6.conv2"
stage3="res7.conv1,res7.conv2,res8.conv1,res8.conv2,res9.conv1,res9.conv2"
shortcuts="res4.shortcut.conv1,res7.shortcut.conv1"
for round in $(seq "${FIRST_ROUND:-1}" "${ROUNDS:-2}"); do
  for entry in "stage1=$stage1" "stage2=$stage2" "stage3=$stage3" "blocks=$stage1,$stage2,$stage3" "all=$stage1,$stage2,$stage3,$shortcuts"; do
    name=${entry%%=*}
    $cli bench --model examples/networks/resnet20-fashion.json --meprop-layers "${entry#*=}" --batch 32 --threads 2 \
      --topk 0.05 --decay 0.6 --exact-sparsity auto --no-torchsharp --steps 200 --warmup 20 \
      --json "$here/$name-run$round.json" | tee "$here/$name-run$round.txt"
  done
done
