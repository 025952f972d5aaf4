#!/usr/bin/env python3
"""Why per-feature-map top-k fails on ResNet-20: for each finished run of a study, the test accuracy of its last
epoch with the running batch norm statistics it trained with and after recomputing them from its training images
(`meprop eval --recompute-batch-norm`), its last training accuracy, and the size of its conv weights (Frobenius
norm of each meProp layer's weight, mean over the layers). Reads the checkpoints in the cache
(~/.cache/meprop/beyond/STUDY/CONFIG/seed-N/last.safetensors), writes STUDY/batch-norm.md.

    experiments/beyond/diagnose-batch-norm.py resnet20-fashion res1.conv1,res1.conv2,...  [DATA_DIR]
"""
import json
import math
import os
import re
import struct
import subprocess
import sys
from array import array

root = os.path.dirname(os.path.abspath(__file__))
study, layers = sys.argv[1], sys.argv[2].split(",")
data = sys.argv[3] if len(sys.argv) > 3 else "/usr/share/datasets/fashion-mnist"
cache = os.path.join(os.environ.get("MEPROP_CACHE", os.path.expanduser("~/.cache/meprop")), "beyond", study)
cli = os.environ.get("MEPROP", "dotnet " + os.path.join(root, "../../src/MeProp.Cli/bin/Release/net10.0/MeProp.Cli.dll")).split()


def weight_norms(path):
    """Frobenius norm of each named layer's weight in a safetensors file (float32)."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        norms = {}
        for layer in layers:
            entry = header[layer + ".weight"]
            start, end = entry["data_offsets"]
            f.seek(8 + size + start)
            values = array("f")
            values.frombytes(f.read(end - start))
            norms[layer] = math.sqrt(sum(v * v for v in values))
    return norms


rows = []
for config in sorted(os.listdir(cache)):
    for seed in sorted(os.listdir(os.path.join(cache, config))):
        run = os.path.join(cache, config, seed)
        if not (seed.startswith("seed-") and os.path.isdir(run) and os.path.exists(os.path.join(run, "summary.json"))):
            continue
        with open(os.path.join(run, "metrics.jsonl")) as f:
            last = json.loads(f.read().splitlines()[-1])
        out = subprocess.run(cli + ["eval", "--checkpoint", os.path.join(run, "last.safetensors"), "--data", data,
                                    "--threads", "1", "--recompute-batch-norm"], capture_output=True, text=True, check=True).stdout
        before, after = [float(v) for v in re.findall(r"test accuracy ([0-9.]+)", out)]
        norms = weight_norms(os.path.join(run, "last.safetensors"))
        rows.append((config, seed, last["epoch"], last["train_accuracy"], before, after,
                     sum(norms.values()) / len(norms), max(norms.values())))
        print(rows[-1], flush=True)

with open(os.path.join(root, study, "batch-norm.md"), "w") as f:
    f.write(f"# Batch norm statistics and weight size at the last epoch ({study})\n\n")
    f.write("Made by `experiments/beyond/diagnose-batch-norm.py` from the runs' last checkpoints. Test accuracy (%) of the last\n"
            "epoch with the running statistics the run kept and after recomputing them from its training images\n"
            "(`meprop eval --recompute-batch-norm`, PyTorch's update_bn); training accuracy of that epoch (batch statistics,\n"
            f"as trained); the Frobenius norm of the weights of the {len(layers)} meProp conv layers, mean and largest.\n\n")
    f.write("| configuration | seed | epoch | train accuracy | test, running statistics | test, recomputed | mean weight norm | largest |\n")
    f.write("|---|---|---|---|---|---|---|---|\n")
    for config, seed, epoch, train, before, after, mean, largest in rows:
        f.write(f"| {config} | {seed[5:]} | {epoch} | {100 * train:.2f} | {100 * before:.2f} | {100 * after:.2f} | {mean:.1f} | {largest:.1f} |\n")
print("wrote", os.path.join(study, "batch-norm.md"))
