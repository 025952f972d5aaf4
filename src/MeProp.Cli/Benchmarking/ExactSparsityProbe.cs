using System.Diagnostics;
using MeProp.Layers;
using MeProp.Optimizers;
using MeProp.Tensors;

namespace MeProp.Cli.Benchmarking;

/// <summary>One layer shape the probe times: a convolution (KernelSize &gt; 0) or a linear layer.</summary>
internal sealed record ProbeLayer(string Name, int InChannels, int OutChannels, int KernelSize, int Padding, int Height, int Width, bool InputGradient = true);

/// <summary>One measurement: a layer's training step at a batch and a density of dL/dy, plain dense and exact-sparse.</summary>
internal sealed record ExactSparsityPoint(string Layer, int Batch, int Threads, double Density, double DenseMs, double ExactMs, double AutoMs)
{
    public double Ratio => ExactMs / DenseMs;
}

/// <summary>
/// Measures where the exact sparse backward stops paying (<see cref="ExactSparsityThresholds"/>): for
/// each layer shape, batch and density of dL/dy, the median time of the layer's forward, backward and
/// Adam update with exact sparsity Off (im2col forward, dense products, the fused linear update),
/// Always (image-by-image forward, sparse kernels on the non-zeros) and Auto (either, by the
/// thresholds), taking turns. The non-zeros sit at
/// uniformly random positions, as ReLU and pooling leave them.
/// </summary>
internal static class ExactSparsityProbe
{
    /// <summary>The paper network's layers and ResNet-20's three convolution widths.</summary>
    public static readonly ProbeLayer[] DefaultLayers =
    [
        new("paper conv1 5x5 1->32 28x28 (no dx)", 1, 32, 5, 2, 28, 28, InputGradient: false),
        new("paper conv2 5x5 32->64 14x14", 32, 64, 5, 2, 14, 14),
        new("paper fc1 3136->1024", 3136, 1024, 0, 0, 1, 1),
        new("resnet 3x3 16->16 32x32", 16, 16, 3, 1, 32, 32),
        new("resnet 3x3 32->32 16x16", 32, 32, 3, 1, 16, 16),
        new("resnet 3x3 64->64 8x8", 64, 64, 3, 1, 8, 8),
    ];

    public static readonly double[] DefaultDensities = [0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0];

    public static IEnumerable<ExactSparsityPoint> Run(IEnumerable<ProbeLayer> layers, int[] batches, int threads, double[] densities, int steps, ulong seed)
    {
        using var compute = new ComputeContext(threads);
        foreach (var shape in layers)
        foreach (int batch in batches)
        foreach (double density in densities)
        {
            var plain = new LayerStep(shape, batch, compute, ExactSparsity.Off, density, seed);
            var exact = new LayerStep(shape, batch, compute, ExactSparsity.Always, density, seed);
            var auto = new LayerStep(shape, batch, compute, ExactSparsity.Auto, density, seed);
            var plainTimes = new List<double>(steps);
            var exactTimes = new List<double>(steps);
            var autoTimes = new List<double>(steps);
            for (int s = 0; s < 3; s++) { plain.Run(); exact.Run(); auto.Run(); }
            for (int s = 0; s < steps; s++)
            {
                plainTimes.Add(plain.Run());
                exactTimes.Add(exact.Run());
                autoTimes.Add(auto.Run());
            }
            yield return new ExactSparsityPoint(shape.Name, batch, threads, density, StepBenchmark.Percentile([.. plainTimes], 0.5),
                StepBenchmark.Percentile([.. exactTimes], 0.5), StepBenchmark.Percentile([.. autoTimes], 0.5));
        }
    }

    /// <summary>One layer with its input, its fixed dL/dy and its optimizer.</summary>
    private sealed class LayerStep
    {
        private readonly IMePropLayer _layer;
        private readonly Tensor _input, _gradient;
        private readonly Adam _optimizer;

        public LayerStep(ProbeLayer shape, int batch, ComputeContext compute, ExactSparsity setting, double density, ulong seed)
        {
            var rng = new Rng(seed);
            _layer = shape.KernelSize > 0
                ? new Conv2d("conv", shape.InChannels, shape.OutChannels, shape.KernelSize, 1, shape.Padding, compute, rng)
                : new Linear("fc", shape.InChannels, shape.OutChannels, compute, rng);
            _layer.ExactSparsity = setting;
            _layer.ComputeInputGradient = shape.InputGradient;
            _input = shape.KernelSize > 0 ? new Tensor(batch, shape.InChannels, shape.Height, shape.Width) : new Tensor(batch, shape.InChannels);
            for (int i = 0; i < _input.Length; i++) _input.Span[i] = rng.NextUniform(0, 1);
            var output = _layer.Forward(_input, training: true);
            _gradient = new Tensor(output.ShapeArray());
            for (int i = 0; i < _gradient.Length; i++)
                _gradient.Span[i] = rng.NextDouble() < density ? (float)rng.NextNormal() : 0;
            _optimizer = new Adam(_layer.Parameters, compute.Pool) { FuseIntoBackward = true };
        }

        /// <summary>Forward, backward and update; milliseconds.</summary>
        public double Run()
        {
            long t0 = Stopwatch.GetTimestamp();
            _layer.Forward(_input, training: true);
            _optimizer.BeginStep();
            _layer.Backward(_gradient);
            _optimizer.FinishStep();
            return (Stopwatch.GetTimestamp() - t0) * 1000.0 / Stopwatch.Frequency;
        }
    }
}
