#!/bin/bash
# Why top-k fails on ResNet-20 when every stage has it, tested by intervention: each meProp conv there feeds
# batch norm, whose exact dL/dy sums to zero over every feature map (batch and positions); the top 5% kept do
# not, and their sum times the mean input patch is a component of the weight gradient that the exact one does
# not have. centre-kept.patch (applied to this commit in a scratch worktree; MEPROP_CENTRE=1 turns it on)
# shifts each feature map's kept values so that they sum to zero, before dW and dx are computed from them.
# ResNet-20 on Fashion-MNIST in the study's setting (10,000 images, batch 32, Adam 1e-3, top-k 5% d0.6 on the
# 20 meProp layers, 1 thread), with and without the shift, seeds 1-3, 3 epochs; and `meprop stats` at the first
# step and after 20 steps (seed 1): per layer the cosine of the weight gradient with the exact one.
# Resumable; writes the runs' metrics and results.md under resnet20-fashion/centred-topk/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/beyond/resnet20-fashion/centred-topk
work=${MEPROP_CACHE:-$HOME/.cache/meprop}/centred-topk
fashion=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
epochs=3
layers="res1.conv1,res1.conv2,res2.conv1,res2.conv2,res3.conv1,res3.conv2,res4.conv1,res4.conv2,res4.shortcut.conv1,res5.conv1,res5.conv2,res6.conv1,res6.conv2,res7.conv1,res7.conv2,res7.shortcut.conv1,res8.conv1,res8.conv2,res9.conv1,res9.conv2"
data="--model examples/networks/resnet20-fashion.json --data $fashion --normalize --max-train 10000 --batch-size 32 --threads 1 --meprop-layers $layers --topk 0.05 --decay 0.6"

mkdir -p "$work"
cli=$(experiments/beyond/patched-cli.sh "$work" "$out/centre-kept.patch")
commit=$(git -C "$work/source" rev-parse --short HEAD)

for seed in 1 2 3; do
  for config in topk5-d0.6 topk5-d0.6-centred; do
    run=$work/runs/$config/seed-$seed
    centre=0; [ "$config" = topk5-d0.6-centred ] && centre=1
    if [ ! -f "$run/summary.json" ]; then
      if [ -f "$run/last.safetensors" ]; then
        MEPROP_CENTRE=$centre $cli train --resume "$run"
      else
        # shellcheck disable=SC2086 # the options are words
        MEPROP_CENTRE=$centre $cli train $data --epochs $epochs --seed "$seed" --out "$run" --overwrite
      fi
    fi
    mkdir -p "$out/runs/$config/seed-$seed"
    cp "$run/metrics.jsonl" "$run/summary.json" "$out/runs/$config/seed-$seed/"
  done
done

for centre in 0 1; do
  for iterations in 1 20; do
    file=$out/stats-centre$centre-iterations$iterations.txt
    # shellcheck disable=SC2086
    [ -f "$file" ] || MEPROP_CENTRE=$centre $cli stats $data --seed 1 --iterations $iterations > "$file"
  done
done

python3 - "$out" "$commit" "$epochs" <<'PY'
import json, statistics, sys
out, commit, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
study = "experiments/beyond/resnet20-fashion/runs"
def pct(v): return f"{100 * v:.1f}"
lines = [
    "# Kept gradients shifted to sum to zero per feature map (resnet20-fashion)",
    "",
    f"Made by `experiments/beyond/centred-topk.sh` at commit {commit} with `centre-kept.patch`: ResNet-20 on Fashion-MNIST",
    "in the study's setting (10,000 images, batch 32, Adam 1e-3, top-k 5% with decay 0.6 on the 20 meProp layers), with",
    "and without shifting each feature map's kept dL/dy values so that they sum to zero, as batch norm's exact dL/dy",
    "does over a feature map. Training accuracy per epoch (batch statistics, as trained), dev and test accuracy at",
    f"epoch {epochs} (running statistics), in %. Dense rows: the study's committed runs (runs/dense), for reference.",
    "",
    "| configuration | seed | " + " | ".join(f"train {e}" for e in range(1, epochs + 1)) + f" | dev {epochs} | test {epochs} |",
    "|---|---|" + "---|" * (epochs + 2),
]
for config in ["dense", "topk5-d0.6", "topk5-d0.6-centred"]:
    for seed in (1, 2, 3):
        root = f"{study}/dense/seed-{seed}" if config == "dense" else f"{out}/runs/{config}/seed-{seed}"
        run = [json.loads(line) for line in open(f"{root}/metrics.jsonl")][:epochs]
        lines.append(f"| {config} | {seed} | " + " | ".join(pct(e["train_accuracy"]) for e in run)
                     + f" | {pct(run[-1]['dev_accuracy'])} | {pct(run[-1]['test_accuracy'])} |")
lines += ["", "Per layer, the cosine between the weight gradient the selection gave and the exact one on the same batch and",
          "weights (`meprop stats`, seed 1; the stem conv1 and fc1 have no selection of their own):", ""]
def cosines(path):
    rows = [line.split() for line in open(path)][2:]
    return {r[0]: float(r[-1]) for r in rows}
tables = {(c, i): cosines(f"{out}/stats-centre{c}-iterations{i}.txt") for c in (0, 1) for i in (1, 20)}
lines.append("| layer | first step | first step, centred | step 20 | step 20, centred |")
lines.append("|---|---|---|---|---|")
for layer in tables[(0, 1)]:
    lines.append(f"| {layer} | " + " | ".join(f"{tables[key][layer]:.2f}" for key in [(0, 1), (1, 1), (0, 20), (1, 20)]) + " |")
open(f"{out}/results.md", "w").write("\n".join(lines) + "\n")
print(f"wrote {out}/results.md")
PY
