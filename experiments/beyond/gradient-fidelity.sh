#!/bin/bash
# How close top-k's weight gradients are to the exact ones: `meprop stats` after 20 training steps (seed 1,
# Adam 1e-3) with top-k 5% d0.6, per layer the cosine between the weight gradient the selection gave and the
# exact one on the same batch and weights. The paper's network on MNIST (batch 10, with and without batch
# norm), and ResNet-20 on Fashion-MNIST as the study trains it (10,000 images, normalised, batch 32) with top-k
# on all 20 meProp layers, on the 6 convs of its first stage only, and on all 20 at initialisation (one step).
# Writes resnet20-fashion/gradient-fidelity.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
cli=${MEPROP:-dotnet src/MeProp.Cli/bin/Release/net10.0/MeProp.Cli.dll}
fashion=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
stage1="res1.conv1,res1.conv2,res2.conv1,res2.conv2,res3.conv1,res3.conv2"
all="$stage1,res4.conv1,res4.conv2,res4.shortcut.conv1,res5.conv1,res5.conv2,res6.conv1,res6.conv2,res7.conv1,res7.conv2,res7.shortcut.conv1,res8.conv1,res8.conv2,res9.conv1,res9.conv2"
paper="stats --batch-size 10 --threads 2 --topk 0.05 --decay 0.6"
resnet="stats --model examples/networks/resnet20-fashion.json --data $fashion --normalize --max-train 10000 --batch-size 32 --threads 2 --topk 0.05 --decay 0.6"
out=experiments/beyond/resnet20-fashion/gradient-fidelity.md
{
  echo "# How close top-k's weight gradients are to the exact ones"
  echo
  echo "Made by \`experiments/beyond/gradient-fidelity.sh\` at commit $(git rev-parse --short HEAD): \`meprop stats\` with top-k 5%,"
  echo "decay 0.6 (seed 1, Adam 1e-3). The last column is the cosine between a layer's weight gradient as the selection"
  echo "gave it and the exact gradient on the same batch and weights; a layer without selection of its own is below 1"
  echo "when a selecting layer after it passed back an approximate dL/dx."
  for config in \
      "paper CNN on MNIST, batch 10, 20 steps|$paper --iterations 20" \
      "paper CNN with batch norm on MNIST, batch 10, 20 steps|$paper --batch-norm --iterations 20" \
      "ResNet-20 on Fashion-MNIST, batch 32, top-k on all 20 meProp layers, 20 steps|$resnet --meprop-layers $all --iterations 20" \
      "ResNet-20 on Fashion-MNIST, batch 32, top-k on the first stage's 6 convs, 20 steps|$resnet --meprop-layers $stage1 --iterations 20" \
      "ResNet-20 on Fashion-MNIST, batch 32, top-k on all 20 meProp layers, first step (initial weights)|$resnet --meprop-layers $all --iterations 1"; do
    echo
    echo "## ${config%%|*}"
    echo
    echo '```'
    # shellcheck disable=SC2086 # the options are words
    $cli ${config#*|}
    echo '```'
  done
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
