#!/bin/bash
# Which layers can per-feature-map top-k sparsify in ResNet-20? Top-k 5% with decay 0.6 trains this network
# when it is on a few layers and fails when it is on all 20 (results.md): here it is put on one stage at a
# time, on the 18 block convs without the two stride-2 shortcut convs, on those two alone, and on all 20, in
# the study's setting (Fashion-MNIST, 10,000 images, batch 32, Adam 1e-3, 1 thread), seeds 1-3, 3 epochs.
# Resumable; writes the runs' metrics and resnet20-fashion/which-layers/results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/beyond/resnet20-fashion/which-layers
work=${MEPROP_CACHE:-$HOME/.cache/meprop}/which-layers
fashion=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
epochs=3
commit=$(git rev-parse --short HEAD)
cli=${MEPROP:-dotnet src/MeProp.Cli/bin/Release/net10.0/MeProp.Cli.dll}
common="--model examples/networks/resnet20-fashion.json --data $fashion --normalize --max-train 10000 --batch-size 32 --threads 1 --topk 0.05 --decay 0.6 --epochs $epochs"
stage1="res1.conv1,res1.conv2,res2.conv1,res2.conv2,res3.conv1,res3.conv2"
stage2="res4.conv1,res4.conv2,res5.conv1,res5.conv2,res6.conv1,res6.conv2"
stage3="res7.conv1,res7.conv2,res8.conv1,res8.conv2,res9.conv1,res9.conv2"
shortcuts="res4.shortcut.conv1,res7.shortcut.conv1"
configs=(
  "stage1=$stage1"
  "stage2=$stage2"
  "stage3=$stage3"
  "shortcuts=$shortcuts"
  "blocks=$stage1,$stage2,$stage3"
  "all=$stage1,$stage2,$stage3,$shortcuts"
)
for seed in 1 2 3; do
  for entry in "${configs[@]}"; do
    config=${entry%%=*}
    run=$work/runs/$config/seed-$seed
    if [ ! -f "$run/summary.json" ]; then
      if [ -f "$run/last.safetensors" ]; then
        $cli train --resume "$run"
      else
        # shellcheck disable=SC2086 # the options are words
        $cli train $common --meprop-layers "${entry#*=}" --seed "$seed" --out "$run" --overwrite
      fi
    fi
    mkdir -p "$out/runs/$config/seed-$seed"
    cp "$run/metrics.jsonl" "$run/summary.json" "$out/runs/$config/seed-$seed/"
  done
done

python3 - "$out" "$commit" "$epochs" <<'PY'
import json, statistics, sys
out, commit, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
layers = {
    "dense": "none (the study's dense runs, for reference)",
    "stage1": "the 6 convs of blocks 1-3 (16 channels, 28x28)",
    "stage2": "the 6 convs of blocks 4-6 (32 channels, 14x14)",
    "stage3": "the 6 convs of blocks 7-9 (64 channels, 7x7)",
    "shortcuts": "the 2 stride-2 shortcut convs (blocks 4 and 7)",
    "blocks": "the 18 block convs (all three stages)",
    "all": "all 20: the 18 block convs and the 2 shortcut convs (the study's top-k rows)",
}
lines = [
    "# Which layers top-k can sparsify (resnet20-fashion)",
    "",
    f"Made by `experiments/beyond/which-layers.sh` at commit {commit}: ResNet-20 on Fashion-MNIST in the study's setting",
    "(10,000 images, batch 32, Adam 1e-3), top-k 5% per feature map with decay 0.6 on the layers named, seeds 1-3.",
    "Training accuracy per epoch (batch statistics, as trained) and dev accuracy (running statistics), in %, mean over",
    "the seeds [min, max].",
    "",
    "| meProp layers | " + " | ".join(f"train {e}" for e in range(1, epochs + 1)) + " | " + " | ".join(f"dev {e}" for e in range(1, epochs + 1)) + " |",
    "|---|" + "---|" * (2 * epochs),
]
def cell(values):
    values = [100 * v for v in values]
    return f"{statistics.mean(values):.1f} [{min(values):.1f}, {max(values):.1f}]"
for config in layers:
    root = "experiments/beyond/resnet20-fashion/runs/dense" if config == "dense" else f"{out}/runs/{config}"
    runs = [[json.loads(l) for l in open(f"{root}/seed-{seed}/metrics.jsonl")][:epochs] for seed in (1, 2, 3)]
    train = [cell([run[e]["train_accuracy"] for run in runs]) for e in range(epochs)]
    dev = [cell([run[e]["dev_accuracy"] for run in runs]) for e in range(epochs)]
    lines.append(f"| {layers[config]} | " + " | ".join(train + dev) + " |")
open(f"{out}/results.md", "w").write("\n".join(lines) + "\n")
print(f"wrote {out}/results.md")
PY
