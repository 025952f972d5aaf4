#!/usr/bin/python3
"""Write PyTorch golden fixtures for the MeProp.NET layer, loss and optimizer tests.

How to run (from the repository root):

    /usr/bin/python3 scripts/make_golden_fixtures.py                     # every fixture
    /usr/bin/python3 scripts/make_golden_fixtures.py residual_identity.json  # only the named ones

Needs Debian's PyTorch and NumPy (`apt-get install -y python3-torch python3-numpy`; Debian 12 ships
torch 1.13). Use /usr/bin/python3 explicitly: a pyenv python3 on PATH will not see the Debian packages.
The output is deterministic for a given torch build (everything is seeded with torch.manual_seed and
runs on one CPU thread).

Writes tests/MeProp.Tests/Fixtures/golden/*.json, one file per case. Each file is

    {"description": "...",
     "params":  {"stride": 1, ...},                       scalars only
     "tensors": {"x": {"shape": [2, 3], "data": [...]}}}  data flat, row-major (C order), float64

network_parameter_counts.json holds no tensors: its params are parameter counts (sum of p.numel() over
module.parameters(), buffers excluded) of networks described as data (examples/networks/*.json, the
format of docs/GUIDE.md's 'Defining networks') and of the built-in paper-cnn, each rebuilt here from its
description as torch.nn modules, keyed "NETWORK.total" and "NETWORK.layer.NAME" (NAME as MeProp names
the layer: conv1, res1.conv1, res1.shortcut.conv1, ...; only layers that have parameters).

Writes tests/MeProp.Tests/Fixtures/torch/ too (PyTorch interop, see torch_weights_case): for paper-cnn on
1x8x8 without and with batch norm and for a small residual network, torch_weights_LABEL.safetensors (the
module's state_dict, seeded, batch norm statistics made non-trivial; safetensors written by hand, torch 1.13
having no safetensors package) and torch_logits_LABEL.json (an input batch and the eval-mode logits, in the
format above plus "network": the description); and torch_state_dict_keys.json (every state_dict key, dtype
and shape of paper-cnn, paper-cnn-bn on 1x28x28 and the residual network), what a model-only checkpoint
(best.safetensors) must hold to load with load_state_dict(strict=True). load_safetensors() reads such a
file back, e.g. to load a best.safetensors into the module of spec_network() by hand.

The reference computations run in torch.float64 (except tiny_cnn_training, which runs in float32 like
the C# model does); the C# side computes in float32 and compares with tolerances. Integer data (class
labels) is stored as floats too. Gradients are d(loss)/d(.) for loss = sum(y * dy), i.e. dy is the
upstream gradient fed to backward. Layouts are PyTorch's: NCHW activations, conv weight
[out, in, kh, kw], linear weight [out, in].
"""

import copy
import json
import os
import sys

import torch
import torch.nn.functional as F

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "MeProp.Tests",
                       "Fixtures", "golden")
MAX_BYTES = 200 * 1024
DT = torch.float64
ONLY = set()  # fixture file names to write (from the command line); empty: all
KNOWN = set()  # every fixture file name main() produces


def tensor_entry(t):
    t = t.detach().contiguous()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def write(name, description, params, tensors, params_per_line=False):
    KNOWN.add(name)
    if ONLY and name not in ONLY:
        return
    doc = {"description": description + f" (torch {torch.__version__})",
           "params": params,
           "tensors": {k: tensor_entry(v) for k, v in tensors.items()}}
    # One tensor per line: compact, yet diffs stay readable.
    lines = ["{", f' "description": {json.dumps(doc["description"])},']
    if params_per_line and doc["params"]:
        lines.append(' "params": {')
        entries = list(doc["params"].items())
        for i, (k, v) in enumerate(entries):
            comma = "," if i < len(entries) - 1 else ""
            lines.append(f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}{comma}")
        lines.append(' },')
    else:
        lines.append(f' "params": {json.dumps(doc["params"])},')
    lines.append(' "tensors": {')
    items = list(doc["tensors"].items())
    for i, (k, v) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}{comma}")
    lines += [" }", "}"]
    text = "\n".join(lines) + "\n"
    json.loads(text)  # self-check: valid JSON
    if len(text.encode()) > MAX_BYTES:
        sys.exit(f"{name}: {len(text)} bytes, over the {MAX_BYTES} byte limit")
    path = os.path.join(OUT_DIR, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(path)} ({len(text)} bytes)")


def randn(*shape):
    return torch.randn(*shape, dtype=DT)


def leaf(t):
    return t.clone().requires_grad_(True)


def distinct_values(*shape):
    """Random values, all distinct (no ties for max pooling): a shuffled grid spaced 0.01 apart."""
    n = 1
    for s in shape:
        n *= s
    return ((torch.randperm(n).to(DT) - n / 2) * 0.01 + torch.rand(n, dtype=DT) * 0.005).reshape(shape)


def conv2d_case(name, x_shape, w_shape, stride, padding, seed):
    torch.manual_seed(seed)
    x, w, b = leaf(randn(*x_shape)), leaf(randn(*w_shape) * 0.3), leaf(randn(w_shape[0]))
    y = F.conv2d(x, w, b, stride=stride, padding=padding)
    dy = randn(*y.shape)
    y.backward(dy)
    write(name, f"conv2d x{list(x_shape)} weight{list(w_shape)} stride {stride} padding {padding}; "
                "dx, dweight, dbias are the gradients for upstream gradient dy",
          {"stride": stride, "padding": padding},
          {"x": x, "weight": w, "bias": b, "y": y, "dy": dy, "dx": x.grad, "dweight": w.grad,
           "dbias": b.grad})


def linear_case(seed):
    torch.manual_seed(seed)
    x, w, b = leaf(randn(5, 7)), leaf(randn(3, 7) * 0.4), leaf(randn(3))
    y = F.linear(x, w, b)
    dy = randn(*y.shape)
    y.backward(dy)
    write("linear.json", "linear y = x W^T + b, weight in PyTorch layout [out, in]", {},
          {"x": x, "weight": w, "bias": b, "y": y, "dy": dy, "dx": x.grad, "dweight": w.grad,
           "dbias": b.grad})


def maxpool_case(name, x_shape, seed, kernel=2, stride=2):
    torch.manual_seed(seed)
    x = leaf(distinct_values(*x_shape))
    y = F.max_pool2d(x, kernel_size=kernel, stride=stride)  # floor mode
    dy = randn(*y.shape)
    y.backward(dy)
    write(name, f"max_pool2d x{list(x_shape)} kernel {kernel} stride {stride}, floor mode, all values distinct",
          {"kernel": kernel, "stride": stride, "padding": 0},
          {"x": x, "y": y, "dy": dy, "dx": x.grad})


def avgpool_case(name, x_shape, kernel, stride, seed):
    torch.manual_seed(seed)
    x = leaf(randn(*x_shape))
    y = F.avg_pool2d(x, kernel_size=kernel, stride=stride)  # no padding, floor mode
    dy = randn(*y.shape)
    y.backward(dy)
    write(name, f"avg_pool2d x{list(x_shape)} kernel {kernel} stride {stride}, no padding, floor mode; "
                "y = window sum / kernel^2",
          {"kernel": kernel, "stride": stride, "padding": 0},
          {"x": x, "y": y, "dy": dy, "dx": x.grad})


def global_avgpool_case(name, x_shape, seed):
    torch.manual_seed(seed)
    x = leaf(randn(*x_shape))
    y = torch.flatten(torch.nn.AdaptiveAvgPool2d(1)(x), 1)
    dy = randn(*y.shape)
    y.backward(dy)
    write(name, f"global average pool: AdaptiveAvgPool2d(1) then flatten, x{list(x_shape)} -> y [N, C]", {},
          {"x": x, "y": y, "dy": dy, "dx": x.grad})


class BasicBlock(torch.nn.Module):
    """ResNet basic block (He et al. 2016), convs with bias as MeProp's Conv2d has one:
    y = bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x), shortcut the identity or conv (1x1, stride) then bn."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(out_channels)
        self.conv2 = torch.nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(out_channels)
        self.shortcut = torch.nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut.add_module("conv", torch.nn.Conv2d(in_channels, out_channels, 1, stride=stride))
            self.shortcut.add_module("bn", torch.nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x)


def residual_case(name, x_shape, out_channels, stride, seed):
    torch.manual_seed(seed)
    model = torch.nn.Module()
    model.block1 = BasicBlock(x_shape[1], out_channels, stride)
    model = model.to(DT)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(1 + 0.3 * randn(module.num_features))
                module.bias.copy_(0.5 * randn(module.num_features))
    tensors = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = leaf(randn(*x_shape))
    model.train()
    y = model.block1(x)
    dy = randn(*y.shape)
    y.backward(dy)
    tensors.update({"x": x, "y": y, "dy": dy, "dx": x.grad})
    for n, p in model.named_parameters():
        tensors["grad." + n] = p.grad
    for n, b in model.named_buffers():
        if not n.endswith("num_batches_tracked"):
            tensors[n] = b
    shortcut = "identity" if stride == 1 and x_shape[1] == out_channels else f"conv 1x1 stride {stride}, bn"
    write(name,
          f"ResNet basic block1 in training mode, x{list(x_shape)} -> {out_channels} channels, stride {stride}: "
          "y = bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x), conv1 3x3 pad 1, conv2 3x3 pad 1 (both with "
          f"bias), shortcut {shortcut}; parameters under their PyTorch names (block1.conv1.weight, ...), "
          "grad.NAME their gradients for upstream gradient dy, block1.*.running_mean/var after the one "
          "forward (momentum 0.1)",
          {"stride": stride, "eps": 1e-5, "momentum": 0.1},
          tensors)


def activation_case(name, fn, seed):
    torch.manual_seed(seed)
    x = randn(4, 9)
    x = x + torch.sign(x) * 0.05  # keep clear of 0 (relu's kink)
    x = leaf(x)
    y = fn(x)
    dy = randn(*y.shape)
    y.backward(dy)
    write(name, f"{name[:-5]} elementwise on x[4,9] (no value within 0.05 of zero)", {},
          {"x": x, "y": y, "dy": dy, "dx": x.grad})


def cross_entropy_case(seed):
    torch.manual_seed(seed)
    logits = leaf(randn(6, 10) * 2)
    labels = torch.randint(0, 10, (6,))
    loss = F.cross_entropy(logits, labels)  # mean over the batch
    loss.backward()
    write("softmax_cross_entropy.json",
          "softmax cross-entropy, loss = mean over the batch of -log softmax(logits)[label] "
          "(F.cross_entropy default); dlogits = d(loss)/d(logits) = (softmax - onehot) / batch; "
          "labels are class indices stored as floats",
          {"batch": 6, "classes": 10},
          {"logits": logits, "labels": labels.to(DT), "loss": loss.reshape(1),
           "dlogits": logits.grad})


def batchnorm_case(name, module_cls, x_shape, seed):
    torch.manual_seed(seed)
    channels = x_shape[1]
    bn = module_cls(channels, eps=1e-5, momentum=0.1).to(DT)
    with torch.no_grad():
        bn.weight.copy_(1 + 0.3 * randn(channels))
        bn.bias.copy_(0.5 * randn(channels))
    gamma, beta = bn.weight.detach().clone(), bn.bias.detach().clone()
    x = leaf(randn(*x_shape) * 1.5 + 0.7)
    bn.train()
    y = bn(x)
    dy = randn(*y.shape)
    y.backward(dy)
    x2 = randn(*x_shape) * 1.2 - 0.3
    bn.eval()
    with torch.no_grad():
        y_eval = bn(x2)
    write(name,
          f"{module_cls.__name__} x{list(x_shape)}, training mode forward/backward (batch statistics, "
          "biased variance for normalisation); running_mean/running_var after that one forward from "
          "init (0, 1) with momentum 0.1: running = (1 - momentum) * running + momentum * batch_stat, "
          "where the running variance uses the UNBIASED batch variance (n / (n - 1)); then y_eval is "
          "eval-mode output for x2 using those running statistics",
          {"eps": 1e-5, "momentum": 0.1},
          {"x": x, "gamma": gamma, "beta": beta, "y": y, "dy": dy, "dx": x.grad,
           "dgamma": bn.weight.grad, "dbeta": bn.bias.grad,
           "running_mean": bn.running_mean, "running_var": bn.running_var,
           "x2": x2, "y_eval": y_eval})


def optimizer_case(name, make_opt, description, params, seed):
    torch.manual_seed(seed)
    p0 = randn(13)
    grads = [randn(13) * s for s in (1.0, 0.5, 2.0)]
    p = torch.nn.Parameter(p0.clone())
    opt = make_opt([p])
    tensors = {"p0": p0}
    for i, g in enumerate(grads, 1):
        tensors[f"g{i}"] = g
    for i, g in enumerate(grads, 1):
        opt.zero_grad()
        p.grad = g.clone()
        opt.step()
        tensors[f"p{i}"] = p.detach().clone()
    write(name, description, params, tensors)


class TinyCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.fc1 = torch.nn.Linear(3 * 2 * 2, 5)
        self.fc2 = torch.nn.Linear(5, 4)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)  # (C, H, W) order
        return self.fc2(F.relu(self.fc1(x)))


def tiny_cnn_case(seed):
    torch.manual_seed(seed)
    model = TinyCnn()  # float32, PyTorch default init
    steps, batch = 5, 4
    inputs = torch.randn(steps, batch, 1, 8, 8)
    labels = torch.randint(0, 4, (steps, batch))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    tensors = {name: p.detach().clone() for name, p in model.named_parameters()}
    tensors["inputs"] = inputs
    tensors["labels"] = labels.to(torch.float32)
    losses = []
    for s in range(steps):
        opt.zero_grad()
        logits = model(inputs[s])
        if s == 0:
            tensors["logits_step0"] = logits.detach().clone()
        loss = F.cross_entropy(logits, labels[s])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tensors["losses"] = torch.tensor(losses, dtype=torch.float32)
    for name, p in model.named_parameters():
        tensors["final." + name] = p.detach().clone()
    write("tiny_cnn_training.json",
          "tiny CNN in float32: conv1(1->2,3x3,pad 1) relu maxpool2 conv2(2->3,3x3,pad 1) relu maxpool2 "
          "flatten (C,H,W) fc1(12->5) relu fc2(5->4); 5 steps of Adam(lr 1e-2, betas 0.9/0.999, "
          "eps 1e-8) on mean cross-entropy; inputs[s] [4,1,8,8] and labels[s] [4] are step s's batch; "
          "losses[s] is the loss of step s's forward (before its update); logits_step0 is the first "
          "forward's output; plain names are the initial weights, final.* the weights after 5 steps",
          {"steps": steps, "batch": batch, "lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
          tensors)


REPO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
NETWORK_FILES = ["examples/networks/resnet20-cifar.json", "examples/networks/resnet20-fashion.json",
                 "examples/networks/cnn3-bn-dropout.json"]


def paper_cnn_spec(batch_norm, size=28):
    """The meProp-CNN paper's network on 1 x size x size (28: the paper's), 10 classes, in the network file
    format: conv 5x5x32 'same' -> [bn] -> relu -> maxpool 2 -> conv 5x5x64 'same' -> [bn] -> relu -> maxpool 2
    -> flatten -> linear 1024 -> [bn1d] -> relu -> linear 10."""
    bn = [{"type": "batchnorm"}] if batch_norm else []
    layers = []
    for channels in (32, 64):
        layers += [{"type": "conv2d", "out_channels": channels, "kernel_size": 5, "padding": "same"}, *bn,
                   {"type": "relu"}, {"type": "maxpool", "kernel_size": 2}]
    layers += [{"type": "flatten"}, {"type": "linear", "out_features": 1024}, *bn, {"type": "relu"},
               {"type": "linear", "out_features": 10}]
    return {"input": [1, size, size], "classes": 10, "layers": layers}


class SpecResidual(torch.nn.Module):
    """y = body(x) + shortcut(x); the body's layers are children of the block (res1.conv1), the shortcut's
    children of its "shortcut" Sequential (res1.shortcut.conv1), an empty Sequential being the identity."""

    def __init__(self):
        super().__init__()
        self.body_names = []
        self.shortcut = torch.nn.Sequential()

    def forward(self, x):
        y = x
        for name in self.body_names:
            y = getattr(self, name)(y)
        return y + self.shortcut(x)


SPEC_KIND = {"conv2d": "conv", "linear": "fc", "batchnorm": "bn", "relu": "act", "sigmoid": "act",
             "tanh": "act", "maxpool": "pool", "avgpool": "pool", "globalavgpool": "gap",
             "dropout": "dropout", "flatten": "flatten", "residual": "res"}


def spec_layers(specs, shape, prefix, named):
    """Builds the modules of a layer list for per-example input `shape`; returns [(local name, module)] and
    the output shape. Names follow the network format: the layer's "name", else kind + a per-list counter
    (the first flatten unnumbered). `named` gets full name -> module for every layer."""
    counters, out = {}, []
    for spec in specs:
        kind = SPEC_KIND[spec["type"]]
        counters[kind] = counters.get(kind, 0) + 1
        name = spec.get("name") or ("flatten" if kind == "flatten" and counters[kind] == 1
                                    else f"{kind}{counters[kind]}")
        named[prefix + name] = None  # a block before its children
        module, shape = spec_layer(spec, shape, prefix + name, named)
        named[prefix + name] = module
        out.append((name, module))
    return out, shape


def spec_layer(spec, shape, full_name, named):
    t = spec["type"]
    if t == "conv2d":
        k, stride, padding = spec["kernel_size"], spec.get("stride", 1), spec.get("padding", 0)
        if padding == "same":
            assert stride == 1 and k % 2 == 1, full_name
            padding = k // 2
        module = torch.nn.Conv2d(shape[0], spec["out_channels"], k, stride=stride, padding=padding)
    elif t == "linear":
        assert len(shape) == 1, f"{full_name}: linear on {shape}"
        module = torch.nn.Linear(shape[0], spec["out_features"])
    elif t == "batchnorm":
        module = torch.nn.BatchNorm2d(shape[0]) if len(shape) == 3 else torch.nn.BatchNorm1d(shape[0])
    elif t in ("relu", "sigmoid", "tanh"):
        module = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[t]()
    elif t == "maxpool":
        module = torch.nn.MaxPool2d(spec["kernel_size"], stride=spec.get("stride", spec["kernel_size"]))
    elif t == "avgpool":
        module = torch.nn.AvgPool2d(spec["kernel_size"], stride=spec.get("stride", spec["kernel_size"]))
    elif t == "globalavgpool":
        module = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    elif t == "dropout":
        module = torch.nn.Dropout(spec.get("p", 0.5))
    elif t == "flatten":
        module = torch.nn.Flatten()
    elif t == "residual":
        module = SpecResidual()
        body, _ = spec_layers(spec["layers"], shape, full_name + ".", named)
        for name, child in body:
            module.add_module(name, child)
            module.body_names.append(name)
        shortcut, _ = spec_layers(spec.get("shortcut", []), shape, full_name + ".shortcut.", named)
        for name, child in shortcut:
            module.shortcut.add_module(name, child)
    else:
        raise ValueError(f"{full_name}: unknown layer type {t}")
    # The shape by a dummy forward (batch 2, eval mode: BatchNorm1d needs more than one value in training).
    module.eval()
    with torch.no_grad():
        y = module(torch.zeros(2, *shape))
    return module, list(y.shape[1:])


def spec_network(spec):
    """The torch.nn.Sequential a network description stands for, and full layer name -> module."""
    named = {}
    layers, shape = spec_layers(spec["layers"], list(spec["input"]), "", named)
    assert shape == [spec["classes"]], f"network ends in {shape}, classes {spec['classes']}"
    model = torch.nn.Sequential()
    for name, module in layers:
        model.add_module(name, module)
    return model, named


def network_parameter_counts_case():
    networks = [(os.path.splitext(os.path.basename(path))[0], path) for path in NETWORK_FILES]
    params = {}
    for label, path in networks + [("paper-cnn", None), ("paper-cnn-bn", None)]:
        if path is None:
            spec = paper_cnn_spec(label.endswith("-bn"))
        else:
            with open(os.path.join(REPO_ROOT, path), encoding="utf-8") as f:
                spec = json.load(f)
        model, named = spec_network(spec)
        total = sum(p.numel() for p in model.parameters())
        params[f"{label}.total"] = total
        for name, module in named.items():
            count = sum(p.numel() for p in module.parameters())
            if count > 0:
                params[f"{label}.layer.{name}"] = count
        assert total == sum(sum(p.numel() for p in m.parameters()) for _, m in model.named_children())
    write("network_parameter_counts.json",
          "parameter counts (sum of p.numel() over module.parameters(), buffers such as BatchNorm running "
          "statistics excluded) of " + ", ".join(path for _, path in networks) + " and the built-in "
          "paper-cnn on 1x28x28 with 10 classes without (paper-cnn) and with batch norm (paper-cnn-bn), each "
          "built as torch.nn modules from its description: conv2d = nn.Conv2d with bias, batchnorm = "
          "nn.BatchNorm2d on [C,H,W] or nn.BatchNorm1d on [F], linear = nn.Linear with in_features inferred, "
          "residual = body + shortcut (identity if absent); NETWORK.total is the network's count, "
          "NETWORK.layer.NAME that of each layer with parameters at any depth (a residual block's count "
          "includes its body and shortcut), NAME as MeProp names the layer (conv1, res1.conv1, "
          "res1.shortcut.conv1)",
          params, {}, params_per_line=True)


# --- PyTorch interop: state_dicts as safetensors, both ways -------------------------------------------------
#
# Debian's torch 1.13 has no safetensors package, so the format is written and read here by hand: an 8-byte
# little-endian header length N, N bytes of JSON {"__metadata__": {str: str}, name: {"dtype": "F32"|"I64",
# "shape": [..], "data_offsets": [begin, end]}} (padded with spaces to a multiple of 8), then the raw
# little-endian data, offsets relative to the end of the header.

TORCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "MeProp.Tests",
                         "Fixtures", "torch")
SAFETENSORS_DTYPES = {torch.float32: "F32", torch.int64: "I64"}

# tests/MeProp.Tests/Cli/TrainCommandTests.cs's TinyResidualNetwork: batch norm, a residual block with a
# 1x1 stride-2 shortcut (res1.shortcut.conv1, res1.shortcut.bn1), global average pooling and dropout.
TINY_RESNET_SPEC = {"input": [1, 8, 8], "classes": 10, "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
    {"type": "residual", "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "batchnorm"},
        {"type": "relu"},
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}],
     "shortcut": [{"type": "conv2d", "out_channels": 8, "kernel_size": 1, "stride": 2}, {"type": "batchnorm"}]},
    {"type": "relu"}, {"type": "globalavgpool"}, {"type": "dropout", "p": 0.2},
    {"type": "linear", "out_features": 10}]}


def safetensors_bytes(tensors, metadata=None):
    """A safetensors file of the named tensors (float32 or int64, in the given order)."""
    assert sys.byteorder == "little"
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, t in tensors.items():
        t = t.detach().contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def load_safetensors(path):
    """(name -> tensor, metadata) of a safetensors file with F32 and I64 tensors."""
    with open(path, "rb") as f:
        raw = f.read()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    data = raw[8 + length:]
    metadata = header.pop("__metadata__", {})
    dtypes = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=dtypes[entry["dtype"]]).reshape(
            entry["shape"])
    return tensors, metadata


def write_torch_file(name, content):
    KNOWN.add(name)
    if ONLY and name not in ONLY:
        return
    os.makedirs(TORCH_DIR, exist_ok=True)
    path = os.path.join(TORCH_DIR, name)
    with open(path, "wb") as f:
        f.write(content)
    print(f"wrote {os.path.relpath(path)} ({len(content)} bytes)")


def seeded_network(spec, seed):
    """The torch module of `spec`, float32, PyTorch's seeded default init, and batch norm made non-trivial:
    gamma, beta, running_mean, running_var random, num_batches_tracked = seed."""
    torch.manual_seed(seed)
    model, named = spec_network(spec)
    with torch.no_grad():
        for module in named.values():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(seed)
    return model.float().eval()


def torch_weights_case(label, spec, description, seed):
    """torch_weights_LABEL.safetensors: the state_dict of `spec`'s module, as PyTorch holds it; and
    torch_logits_LABEL.json: a fixed input batch x [4, C, H, W] (float32 values) and the module's eval-mode
    logits [4, classes], computed in float64 from the float32 weights; "network" is the spec."""
    model = seeded_network(spec, seed)
    state = model.state_dict()
    content = safetensors_bytes(state, {"format": "pt"})
    write_torch_file(f"torch_weights_{label}.safetensors", content)
    # Self-check: the bytes read back load strictly into a fresh module.
    tensors, _ = load_safetensors_bytes(content)
    torch.manual_seed(0)
    fresh, _ = spec_network(spec)
    fresh.load_state_dict(tensors, strict=True)
    assert all(torch.equal(state[k], fresh.state_dict()[k]) for k in state)

    x = torch.rand(4, *spec["input"], generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        logits = copy.deepcopy(model).double().eval()(x.double())
    name = f"torch_logits_{label}.json"
    KNOWN.add(name)
    if ONLY and name not in ONLY:
        return
    doc = {"description": f"{description}: eval-mode logits of the module whose state_dict is "
                          f"torch_weights_{label}.safetensors (seeded init, random batch norm statistics), "
                          f"for input x, in float64 from the float32 weights (torch {torch.__version__})",
           "network": spec, "params": {},
           "tensors": {"x": tensor_entry(x), "logits": tensor_entry(logits)}}
    text = json.dumps(doc) + "\n"
    os.makedirs(TORCH_DIR, exist_ok=True)
    path = os.path.join(TORCH_DIR, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(path)} ({len(text)} bytes)")


def load_safetensors_bytes(content):
    """load_safetensors of bytes in memory."""
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(content)
        f.flush()
        return load_safetensors(f.name)


def torch_state_dict_keys_case():
    """torch_state_dict_keys.json: per network, every state_dict key of its torch module with dtype
    ("float32", "int64") and shape: what a model-only checkpoint must hold for load_state_dict(strict=True)."""
    networks = {"paper-cnn": paper_cnn_spec(False), "paper-cnn-bn": paper_cnn_spec(True),
                "tiny-resnet": TINY_RESNET_SPEC}
    doc = {"description": "state_dict keys, dtypes and shapes of torch modules built from network descriptions "
                          "(paper-cnn and paper-cnn-bn on 1x28x28, the built-in networks; tiny-resnet as "
                          f"'networks' gives it) (torch {torch.__version__})",
           "networks": {}, "specs": {"tiny-resnet": TINY_RESNET_SPEC}}
    for label, spec in networks.items():
        model, _ = spec_network(spec)
        doc["networks"][label] = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                                  for k, v in model.state_dict().items()}
    name = "torch_state_dict_keys.json"
    KNOWN.add(name)
    if ONLY and name not in ONLY:
        return
    text = json.dumps(doc, indent=1) + "\n"
    os.makedirs(TORCH_DIR, exist_ok=True)
    path = os.path.join(TORCH_DIR, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(path)} ({len(text)} bytes)")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    ONLY.update(sys.argv[1:])
    conv2d_case("conv2d_s1_p2.json", (2, 3, 7, 6), (4, 3, 5, 5), 1, 2, seed=101)
    conv2d_case("conv2d_s2_p1.json", (3, 2, 9, 8), (5, 2, 3, 3), 2, 1, seed=102)
    conv2d_case("conv2d_s1_p0_odd.json", (1, 1, 5, 5), (2, 1, 3, 3), 1, 0, seed=103)
    conv2d_case("conv2d_k4_s2_p1.json", (2, 3, 10, 9), (4, 3, 4, 4), 2, 1, seed=104)    # even kernel
    conv2d_case("conv2d_k2_s3_p0.json", (2, 2, 8, 10), (3, 2, 2, 2), 3, 0, seed=105)    # stride over the kernel
    conv2d_case("conv2d_k1_s2_p0.json", (2, 5, 7, 6), (6, 5, 1, 1), 2, 0, seed=106)     # 1x1, strided
    linear_case(seed=201)
    maxpool_case("maxpool2d.json", (2, 3, 6, 6), seed=301)
    maxpool_case("maxpool2d_odd.json", (1, 2, 7, 5), seed=302)
    maxpool_case("maxpool2d_k3s2.json", (2, 3, 9, 11), seed=303, kernel=3, stride=2)  # overlapping windows
    maxpool_case("maxpool2d_k2s1.json", (1, 2, 6, 5), seed=304, kernel=2, stride=1)
    maxpool_case("maxpool2d_wide.json", (2, 3, 16, 18), seed=305)  # 9 outputs a row: the vector path
    activation_case("relu.json", torch.relu, seed=401)
    activation_case("sigmoid.json", torch.sigmoid, seed=402)
    activation_case("tanh.json", torch.tanh, seed=403)
    cross_entropy_case(seed=501)
    batchnorm_case("batchnorm2d_train.json", torch.nn.BatchNorm2d, (4, 3, 5, 5), seed=601)
    batchnorm_case("batchnorm1d_train.json", torch.nn.BatchNorm1d, (6, 5), seed=602)
    batchnorm_case("batchnorm2d_1x1_train.json", torch.nn.BatchNorm2d, (6, 4, 1, 1), seed=603)
    optimizer_case("adam_steps.json",
                   lambda ps: torch.optim.Adam(ps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
                   "torch.optim.Adam(lr 1e-3, betas (0.9, 0.999), eps 1e-8, bias-corrected, no weight "
                   "decay) on p0 [13]; gradient gi applied at step i; pi = parameter after step i",
                   {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, seed=701)
    optimizer_case("sgd_momentum_steps.json",
                   lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
                   "torch.optim.SGD(lr 0.1, momentum 0.9, no dampening/nesterov): v = mu*v + g "
                   "(v = g at the first step), p -= lr*v; gradient gi applied at step i; pi = parameter "
                   "after step i",
                   {"lr": 0.1, "momentum": 0.9}, seed=702)
    tiny_cnn_case(seed=801)
    avgpool_case("avgpool2d_k2s2.json", (2, 3, 7, 17), 2, 2, seed=901)
    avgpool_case("avgpool2d_k3s2_odd.json", (2, 2, 9, 7), 3, 2, seed=902)
    avgpool_case("avgpool2d_k2s3.json", (2, 2, 8, 11), 2, 3, seed=904)  # stride over the kernel
    global_avgpool_case("global_avgpool2d.json", (3, 4, 5, 7), seed=903)
    residual_case("residual_identity.json", (2, 4, 6, 6), 4, 1, seed=1001)
    residual_case("residual_downsample.json", (4, 3, 8, 7), 6, 2, seed=1002)
    network_parameter_counts_case()
    torch_weights_case("paper_cnn_8x8", paper_cnn_spec(False, size=8),
                       "paper-cnn on 1x8x8 (fc1 64*2*2 -> 1024)", seed=1101)
    torch_weights_case("paper_cnn_bn_8x8", paper_cnn_spec(True, size=8),
                       "paper-cnn with batch norm on 1x8x8 (fc1 64*2*2 -> 1024)", seed=1102)
    torch_weights_case("tiny_resnet", TINY_RESNET_SPEC,
                       "a small residual network on 1x8x8 (TrainCommandTests' TinyResidualNetwork)", seed=1103)
    torch_state_dict_keys_case()
    if ONLY - KNOWN:
        sys.exit(f"no such fixture: {', '.join(sorted(ONLY - KNOWN))}")


if __name__ == "__main__":
    main()
