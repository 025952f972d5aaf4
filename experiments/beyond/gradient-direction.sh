#!/bin/bash
# The premise of resnet20-fashion/batch-norm.md, measured: after 20 training steps of ResNet-20 on
# Fashion-MNIST as the study trains it (10,000 images, normalised, batch 32, seed 1, from the same initial
# weights), the mean over output channels of |cos(w, dL/dw)| per conv layer (`meprop stats`), dense, with
# top-k 5% d0.6 and with channel selection (60% kept) on the study's 20 meProp layers. Writes
# resnet20-fashion/gradient-direction.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
cli=${MEPROP:-dotnet src/MeProp.Cli/bin/Release/net10.0/MeProp.Cli.dll}
fashion=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
layers="res1.conv1,res1.conv2,res2.conv1,res2.conv2,res3.conv1,res3.conv2,res4.conv1,res4.conv2,res4.shortcut.conv1,res5.conv1,res5.conv2,res6.conv1,res6.conv2,res7.conv1,res7.conv2,res7.shortcut.conv1,res8.conv1,res8.conv2,res9.conv1,res9.conv2"
common="stats --model examples/networks/resnet20-fashion.json --data $fashion --normalize --max-train 10000 --batch-size 32 --iterations 20 --threads 2"
out=experiments/beyond/resnet20-fashion/gradient-direction.md
{
  echo "# Direction of the weight gradient (resnet20-fashion)"
  echo
  echo "Made by \`experiments/beyond/gradient-direction.sh\` at commit $(git rev-parse --short HEAD): \`meprop stats\` after 20 steps"
  echo "(10,000 images, normalised, batch 32, seed 1, Adam 1e-3). The |cos(w, dL/dw)| column is the mean over a layer's"
  echo "output channels of the cosine between a filter and its gradient. Each conv layer feeds a batch norm, so its"
  echo "true gradient is orthogonal to every filter (0 up to rounding). (The last column, the cosine with the exact"
  echo "gradient, is the subject of gradient-fidelity.md.)"
  for config in "dense|" "top-k 5%, decay 0.6|--topk 0.05 --decay 0.6 --meprop-layers $layers" "channel selection, 60% kept|--topk 0.6 --selection channel --meprop-layers $layers"; do
    echo
    echo "## ${config%%|*}"
    echo
    echo '```'
    # shellcheck disable=SC2086 # the options are words
    $cli $common ${config#*|}
    echo '```'
  done
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
