using System.Diagnostics;
using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Tensors;
using MeProp.Threading;
using MeProp.Training;

namespace MeProp.Cli.Benchmarking;

/// <summary>One benchmark configuration of the paper's network.</summary>
internal sealed record StepConfig(double? TopK, double Decay, bool BatchNorm, int Batch, int Threads)
{
    public string Mode => TopK is null ? "dense" : "meprop";
    public string Label => (TopK is double k ? $"meprop {k:P0} decay {Decay:0.##}" : "dense") + (BatchNorm ? " +bn" : "");
}

/// <summary>One row of `meprop bench --json`; times are medians in milliseconds.</summary>
internal sealed record StepRecord
{
    public required string Engine { get; init; }
    public required string Mode { get; init; }
    public double? Topk { get; init; }
    public double Decay { get; init; }
    public bool BatchNorm { get; init; }
    public int Batch { get; init; }
    public int Threads { get; init; }
    public int Steps { get; init; }
    public double ForwardMs { get; init; }
    public double BackwardMs { get; init; }
    public double UpdateMs { get; init; }
    public double StepMs { get; init; }
    public double StepMsP10 { get; init; }
    public double StepMsP90 { get; init; }
    public Dictionary<string, double> BackwardMsPerLayer { get; init; } = [];
    public Dictionary<string, double> ForwardMsPerLayer { get; init; } = [];
    public double? AllocatedBytesPerStep { get; init; }
    public string? Note { get; init; }
}

/// <summary>
/// Times training steps of the paper's network on seeded synthetic batches: warm-up steps, then
/// per-step forward (model + loss), backward (per layer too), Adam update and the whole step, reported
/// as medians; allocation is measured over the timed steps across all threads.
/// </summary>
internal static class StepBenchmark
{
    public static StepRecord Run(StepConfig config, int steps, int warmup, ulong seed)
    {
        using var compute = new ComputeContext(config.Threads);
        var options = new TrainOptions
        {
            ModelOptions = new ModelOptions { BatchNorm = config.BatchNorm },
            TopK = config.TopK,
            Decay = config.TopK is null ? 0 : config.Decay,
            Seed = seed,
            Threads = config.Threads,
            BatchSize = config.Batch,
        };
        var model = Trainer.BuildModel(options, 1, 28, 28, compute);
        var optimizer = new Adam(model.Parameters, compute.Pool);
        foreach (var linear in model.Layers.OfType<Linear>()) linear.FusedOptimizer = optimizer;
        var loss = new SoftmaxCrossEntropy();
        var rng = new Rng(seed);
        const int batches = 8;
        var images = new Tensor[batches];
        var labels = new int[batches][];
        for (int b = 0; b < batches; b++)
        {
            images[b] = new Tensor(config.Batch, 1, 28, 28);
            for (int i = 0; i < images[b].Length; i++) images[b].Storage[i] = (float)rng.NextDouble();
            labels[b] = new int[config.Batch];
            for (int i = 0; i < config.Batch; i++) labels[b][i] = rng.NextInt(10);
        }
        var layers = model.Layers;
        var forward = new double[steps];
        var backward = new double[steps];
        var update = new double[steps];
        var whole = new double[steps];
        var perLayer = new double[layers.Count][];
        for (int l = 0; l < layers.Count; l++) perLayer[l] = new double[steps];
        var before = new long[layers.Count];
        var beforeForward = new long[layers.Count];
        var perLayerForward = new double[layers.Count][];
        for (int l = 0; l < layers.Count; l++) perLayerForward[l] = new double[steps];
        long allocatedBefore = 0;
        for (int s = -warmup; s < steps; s++)
        {
            if (s == 0)
            {
                GC.Collect();
                allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            }
            var x = images[(s + warmup) % batches];
            var y = labels[(s + warmup) % batches];
            if (s >= 0)
                for (int l = 0; l < layers.Count; l++) (before[l], beforeForward[l]) = (model.BackwardTicks(l), model.ForwardTicks(l));
            long t0 = Stopwatch.GetTimestamp();
            loss.Forward(model.Forward(x, training: true), y);
            long t1 = Stopwatch.GetTimestamp();
            optimizer.BeginStep(); // before backward: the linear layers apply their update in it (fused)
            model.Backward(loss.Gradient);
            long t2 = Stopwatch.GetTimestamp();
            optimizer.FinishStep();
            long t3 = Stopwatch.GetTimestamp();
            if (s < 0) continue;
            forward[s] = Ms(t1 - t0);
            backward[s] = Ms(t2 - t1);
            update[s] = Ms(t3 - t2);
            whole[s] = Ms(t3 - t0);
            for (int l = 0; l < layers.Count; l++)
            {
                perLayer[l][s] = Ms(model.BackwardTicks(l) - before[l]);
                perLayerForward[l][s] = Ms(model.ForwardTicks(l) - beforeForward[l]);
            }
        }
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        return new StepRecord
        {
            Engine = "meprop",
            Mode = config.Mode,
            Topk = config.TopK,
            Decay = config.TopK is null ? 0 : config.Decay,
            BatchNorm = config.BatchNorm,
            Batch = config.Batch,
            Threads = config.Threads,
            Steps = steps,
            ForwardMs = Percentile(forward, 0.5),
            BackwardMs = Percentile(backward, 0.5),
            UpdateMs = Percentile(update, 0.5),
            StepMs = Percentile(whole, 0.5),
            StepMsP10 = Percentile(whole, 0.1),
            StepMsP90 = Percentile(whole, 0.9),
            BackwardMsPerLayer = layers.Select((l, i) => (l, i)).Where(p => p.l.Parameters.Count > 0 || p.l is MaxPool2d)
                .ToDictionary(p => p.l.Name, p => Math.Round(Percentile(perLayer[p.i], 0.5), 4)),
            ForwardMsPerLayer = layers.Select((l, i) => (l, i)).ToDictionary(p => p.l.Name, p => Math.Round(Percentile(perLayerForward[p.i], 0.5), 4)),
            AllocatedBytesPerStep = (double)allocated / steps,
        };
    }

    private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    /// <summary>Linear-interpolated percentile q in [0, 1].</summary>
    public static double Percentile(double[] values, double q)
    {
        if (values.Length == 0) return double.NaN;
        var sorted = values.OrderBy(v => v).ToArray();
        double position = q * (sorted.Length - 1);
        int low = (int)Math.Floor(position), high = (int)Math.Ceiling(position);
        return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
    }
}
