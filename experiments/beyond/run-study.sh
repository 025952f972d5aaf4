#!/bin/bash
# The study of issue 21, resumable (see run-configs.sh): dense, per-feature-map top-k 5% with decay 0.6,
# channel selection with 40% of the channels dropped after one dense epoch (ssProp's setting), and a
# schedule (top-k from 20% to 2% linearly, decay 0.6), and on ResNet-20 top-k with its kept values shifted to mean
# zero per channel (--topk-zero-mean, added after the first four), with Adam 1e-3, seeds 1-3 (STUDY_SEEDS="3 2 1" for
# another order: a second run-study.sh beside the first skips the runs the first holds), 20 epochs, 1 thread each.
#   paper-mnist: the paper's network on MNIST (55,000 training images, batch 10), meProp on its two conv layers;
#   resnet20-fashion: ResNet-20 on Fashion-MNIST (the first 10,000 training images after the 5,000 dev ones,
#   normalised, batch 32), meProp on every conv layer but the first.
set -euo pipefail
cd "$(dirname "$0")"
fashion=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
resnet="--model examples/networks/resnet20-fashion.json --data $fashion --normalize --max-train 10000 --batch-size 32 --threads 1"
layers="--meprop-layers res1.conv1,res1.conv2,res2.conv1,res2.conv2,res3.conv1,res3.conv2,res4.conv1,res4.conv2,res4.shortcut.conv1,res5.conv1,res5.conv2,res6.conv1,res6.conv2,res7.conv1,res7.conv2,res7.shortcut.conv1,res8.conv1,res8.conv2,res9.conv1,res9.conv2"
for seed in ${STUDY_SEEDS:-1 2 3}; do
./run-configs.sh paper-mnist 20 "$seed" \
  dense="--threads 1" \
  topk5-d0.6="--threads 1 --topk 0.05 --decay 0.6" \
  channel40-warmup="--threads 1 --topk 0.6 --selection channel --dense-warmup 1" \
  linear20to2-d0.6="--threads 1 --topk 0.05 --decay 0.6 --topk-schedule linear:0.2:0.02"
./run-configs.sh resnet20-fashion 20 "$seed" \
  dense="$resnet" \
  topk5-d0.6="$resnet $layers --topk 0.05 --decay 0.6" \
  channel40-warmup="$resnet $layers --topk 0.6 --selection channel --dense-warmup 1" \
  linear20to2-d0.6="$resnet $layers --topk 0.05 --decay 0.6 --topk-schedule linear:0.2:0.02" \
  topk5-d0.6-zero-mean="$resnet $layers --topk 0.05 --decay 0.6 --topk-zero-mean"
done
