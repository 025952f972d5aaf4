// The libtorch side of `meprop bench --model FILE.json`: a small interpreter of the network file format
// (MeProp.Models.NetworkSpec, parsed by src/MeProp) into TorchSharp modules with PyTorch's default init.
// conv2d -> Conv2d (with bias), linear -> Linear, batchnorm -> BatchNorm2d on [C, H, W] / BatchNorm1d on [F],
// relu/sigmoid/tanh, maxpool -> MaxPool2d, avgpool -> AvgPool2d, globalavgpool -> AdaptiveAvgPool2d(1) +
// Flatten, dropout, flatten, residual -> body + shortcut (identity when absent), normalize -> (x - mean) / std.
// In-sizes are inferred from the per-example shape as NetworkFactory infers them; shapes are checked by
// our side (the CLI builds the network first), so this only follows them.
using System.Text.Json;
using MeProp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MeProp.TorchBaseline
{
    static class NetworkModules
    {
        /// <summary>The network of <paramref name="spec"/>, in TorchSharp modules.</summary>
        public static nn.Module<Tensor, Tensor> Build(NetworkSpec spec)
        {
            long[] shape = spec.Input.Select(d => (long)d).ToArray();
            return Layers(spec.Layers, ref shape);
        }

        static nn.Module<Tensor, Tensor> Layers(List<LayerSpec> specs, ref long[] shape)
        {
            var modules = new List<(string, nn.Module<Tensor, Tensor>)>();
            int index = 0;
            foreach (var spec in specs)
            {
                // Module names may not hold dots; the spec's names are for reading only here.
                string name = $"{index++}_{spec.Type}";
                modules.Add((name, Layer(spec, ref shape)));
            }
            return nn.Sequential(modules);
        }

        static nn.Module<Tensor, Tensor> Layer(LayerSpec spec, ref long[] shape)
        {
            switch (spec.Type)
            {
                case "conv2d":
                {
                    long k = spec.KernelSize!.Value, s = spec.Stride ?? 1, p = Padding(spec, k);
                    long oc = spec.OutChannels!.Value;
                    var conv = nn.Conv2d(shape[0], oc, k, stride: s, padding: p);
                    shape = [oc, (shape[1] + 2 * p - k) / s + 1, (shape[2] + 2 * p - k) / s + 1];
                    return conv;
                }
                case "linear":
                {
                    long of = spec.OutFeatures!.Value;
                    var linear = nn.Linear(shape[0], of);
                    shape = [of];
                    return linear;
                }
                case "batchnorm":
                    return shape.Length == 3 ? nn.BatchNorm2d(shape[0]) : nn.BatchNorm1d(shape[0]);
                case "relu": return nn.ReLU();
                case "sigmoid": return nn.Sigmoid();
                case "tanh": return nn.Tanh();
                case "maxpool" or "avgpool":
                {
                    long k = spec.KernelSize!.Value, s = spec.Stride ?? k;
                    shape = [shape[0], (shape[1] - k) / s + 1, (shape[2] - k) / s + 1];
                    return spec.Type == "maxpool" ? nn.MaxPool2d(k, s) : nn.AvgPool2d(k, s);
                }
                case "globalavgpool":
                    shape = [shape[0]];
                    return nn.Sequential(("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()));
                case "dropout": return nn.Dropout(spec.P ?? 0.5);
                case "flatten":
                    shape = [shape.Aggregate(1L, (a, b) => a * b)];
                    return nn.Flatten();
                case "normalize":
                    return new Normalize(spec.Mean!, spec.Std!, shape.Length);
                case "residual":
                {
                    long[] bodyShape = shape, shortcutShape = shape;
                    var body = Layers(spec.Layers!, ref bodyShape);
                    var shortcut = spec.Shortcut is { Count: > 0 } list ? Layers(list, ref shortcutShape) : nn.Identity();
                    shape = bodyShape;
                    return new Residual(body, shortcut);
                }
                default:
                    throw new ArgumentException($"layer type '{spec.Type}' is not supported by the TorchSharp baseline");
            }
        }

        static long Padding(LayerSpec spec, long kernel)
        {
            if (spec.Padding is not JsonElement padding) return 0;
            return padding.ValueKind == JsonValueKind.String ? kernel / 2 : padding.GetInt64(); // "same": odd kernel, stride 1
        }

        /// <summary>y = body(x) + shortcut(x).</summary>
        sealed class Residual : nn.Module<Tensor, Tensor>
        {
            private readonly nn.Module<Tensor, Tensor> body, shortcut;

            public Residual(nn.Module<Tensor, Tensor> body, nn.Module<Tensor, Tensor> shortcut) : base("Residual")
            {
                this.body = body;
                this.shortcut = shortcut;
                RegisterComponents();
            }

            public override Tensor forward(Tensor x) => body.forward(x) + shortcut.forward(x);
        }

        /// <summary>y = (x - mean[c]) / std[c], per channel of [C, H, W] or per feature of [F].</summary>
        sealed class Normalize : nn.Module<Tensor, Tensor>
        {
            private readonly Tensor mean, std;

            public Normalize(float[] mean, float[] std, int rank) : base("Normalize")
            {
                long[] view = rank == 3 ? [1, mean.Length, 1, 1] : [1, mean.Length];
                this.mean = torch.tensor(mean).reshape(view);
                this.std = torch.tensor(std).reshape(view);
                RegisterComponents();
            }

            public override Tensor forward(Tensor x) => (x - mean) / std;
        }
    }
}
