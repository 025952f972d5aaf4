using System.Diagnostics;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Tensors;
using MeProp.Training;

namespace MeProp.Cli.Benchmarking;

/// <summary>
/// One benchmark configuration: of the paper's network, or with <see cref="Network"/> of a network file
/// (built by <see cref="NetworkFactory"/>; meProp, where <see cref="TopK"/> is set, on
/// <see cref="MePropLayers"/>, default <see cref="DefaultMePropLayers"/>; <see cref="BatchNorm"/> unused).
/// </summary>
internal sealed record StepConfig(double? TopK, double Decay, bool BatchNorm, int Batch, int Threads,
    NetworkSpec? Network = null, IReadOnlyList<string>? MePropLayers = null, ExactSparsity ExactSparsity = ExactSparsity.Auto,
    BenchInputs? Inputs = null)
{
    /// <summary>A network file's default meProp layers: every conv layer except the first one.</summary>
    public static string[] DefaultMePropLayers(Sequential model) =>
        model.AllLayers.OfType<Conv2d>().Skip(1).Select(l => l.Name).ToArray();

    public string Mode => TopK is null ? "dense" : "meprop";
    public string Label => (TopK is double k ? $"meprop {k:P0} decay {Decay:0.##}" : "dense") + (BatchNorm ? " +bn" : "") + $" exact {ExactSparsity.ToString().ToLowerInvariant()}";
}

/// <summary>
/// What our side trains on instead of synthetic batches and its seeded initial weights: the first
/// images of a data set's training split (<see cref="Data"/>) and a trained model's weights
/// (<see cref="Weights"/>, a model-only safetensors file such as best.safetensors), so that the step
/// meets a trained network's activations and gradients, zeros included. Either may be null.
/// </summary>
internal sealed record BenchInputs(Dataset? Data, string? DataDirectory, string? Weights);

/// <summary>One row of `meprop bench --json`; times are medians in milliseconds.</summary>
internal sealed record StepRecord
{
    public required string Engine { get; init; }
    public required string Mode { get; init; }
    /// <summary>The network file benched (`--model`); null for the paper's network.</summary>
    public string? Model { get; init; }
    public double? Topk { get; init; }
    public double Decay { get; init; }
    /// <summary>Our engine's <see cref="Layers.ExactSparsity"/> setting (null for libtorch).</summary>
    public ExactSparsity? ExactSparsity { get; init; }
    /// <summary>Per conv and linear layer: the fraction of its backward passes that ran on dL/dy's non-zeros only (exact sparsity).</summary>
    public Dictionary<string, double> ExactSparseFraction { get; init; } = [];
    /// <summary>Per conv and linear layer: the fraction of dL/dy's entries that were non-zero, where it was counted.</summary>
    public Dictionary<string, double> GradientDensity { get; init; } = [];
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
    /// <summary>The evaluation forward (no backward will follow: eval mode, no autograd) on the same batches; median.</summary>
    public double? EvalForwardMs { get; init; }
    public Dictionary<string, double> BackwardMsPerLayer { get; init; } = [];
    public Dictionary<string, double> ForwardMsPerLayer { get; init; } = [];
    public double? AllocatedBytesPerStep { get; init; }
    public string? Note { get; init; }
    /// <summary>Where our side's batches came from: "synthetic" or a data directory (its first training images).</summary>
    public string? Data { get; init; }
    /// <summary>The weights our side started from: null for its seeded initialisation, else the file.</summary>
    public string? Weights { get; init; }
    /// <summary>Multiply-adds per example of the forward (conv and linear layers), from <see cref="ModelSummary"/>.</summary>
    public long? ForwardMacsPerExample { get; init; }
    /// <summary>Multiply-adds per example of the dense backward; a meProp step does fewer.</summary>
    public long? BackwardMacsPerExample { get; init; }
    /// <summary>GFLOP/s of the whole step on the dense-equivalent work: 2 x batch x (forward + dense backward MACs) / step time.</summary>
    public double? DenseEquivalentGflops { get; init; }
    /// <summary>The probe's FP32 FMA peak at this record's thread count, GFLOP/s.</summary>
    public double? FmaPeakGflops { get; init; }
    /// <summary><see cref="DenseEquivalentGflops"/> / <see cref="FmaPeakGflops"/>.</summary>
    public double? FmaPeakFraction { get; init; }
    /// <summary>The machine probe's figures, the same in every record of a run.</summary>
    public MachineFigures? Machine { get; init; }

    /// <summary>This record with its dense-equivalent GFLOP/s and the fraction of the probe's FMA peak filled in (where it has MACs and a time).</summary>
    public StepRecord WithFigures(MachineFigures? machine)
    {
        if (Steps == 0 || ForwardMacsPerExample is not long forward || BackwardMacsPerExample is not long backward)
            return this with { Machine = machine };
        double gflops = StepBenchmark.DenseEquivalentGflops(forward + backward, Batch, StepMs);
        double? peak = machine?.FmaPeakGflops(Threads);
        return this with
        {
            Machine = machine,
            DenseEquivalentGflops = Math.Round(gflops, 3),
            FmaPeakGflops = peak is double p ? Math.Round(p, 3) : null,
            FmaPeakFraction = peak is double q && q > 0 ? Math.Round(gflops / q, 4) : null,
        };
    }
}

/// <summary>
/// Times training steps of the paper's network on seeded synthetic batches: per step, forward (model +
/// loss), backward (per layer too), Adam update and the whole step, reported as medians; allocation is
/// measured over the timed steps across all threads. Steps run in blocks (<see cref="RunSteps"/>) so
/// that a caller can interleave several configurations on one pool: the machine's speed drifts over
/// minutes, and ratios between configurations timed block by block do not.
/// </summary>
internal sealed class StepBenchmark
{
    private const int Batches = 8;
    private readonly StepConfig _config;
    private readonly Sequential _model;
    private readonly Adam _optimizer;
    private readonly SoftmaxCrossEntropy _loss = new();
    private readonly Tensor[] _images = new Tensor[Batches];
    private readonly int[][] _labels = new int[Batches][];
    private readonly List<double> _forward, _backward, _update, _whole, _evalForward;
    private readonly List<double>[] _backwardPerLayer, _forwardPerLayer;
    private readonly long[] _backwardTicksBefore, _forwardTicksBefore;
    private readonly ModelSummary _summary;
    private long _allocated;
    private int _stepsRun;

    /// <param name="timedSteps">How many timed steps will be run: the timing lists are sized for them up front, so recording allocates nothing.</param>
    public StepBenchmark(StepConfig config, ComputeContext compute, ulong seed, int timedSteps)
    {
        if (compute.Threads != config.Threads) throw new ArgumentException("bench: the pool's thread count differs from the configuration's");
        _config = config;
        var options = new TrainOptions
        {
            ModelOptions = new ModelOptions { BatchNorm = config.BatchNorm },
            TopK = config.TopK,
            Decay = config.TopK is null ? 0 : config.Decay,
            Seed = seed,
            Threads = config.Threads,
            BatchSize = config.Batch,
        };
        int[] input = config.Network?.Input ?? [1, 28, 28];
        int classes = config.Network?.Classes ?? MnistFiles.Classes;
        _model = config.Network is NetworkSpec spec ? BuildNetwork(spec, config, compute, seed) : Trainer.BuildModel(options, 1, 28, 28, MnistFiles.Classes, compute);
        foreach (var layer in _model.AllLayers.OfType<IMePropLayer>()) layer.ExactSparsity = config.ExactSparsity;
        _summary = new ModelSummary(_model, input);
        _optimizer = new Adam(_model.Parameters, compute.Pool);
        _optimizer.FuseIntoBackward = true;
        if (config.Inputs?.Weights is string weights) Checkpoint.LoadWeights(weights, _model);
        var rng = new Rng(seed);
        var data = config.Inputs?.Data;
        if (data is not null && (!new[] { data.Channels, data.Height, data.Width }.SequenceEqual(input) || data.Classes > classes))
            throw new ArgumentException($"--data: {data.Channels}x{data.Height}x{data.Width} images of {data.Classes} classes do not fit the network's input {string.Join("x", input)} and {classes} classes");
        for (int b = 0; b < Batches; b++)
        {
            _images[b] = new Tensor([config.Batch, .. input]);
            _labels[b] = new int[config.Batch];
            if (data is not null)
            {
                // Consecutive training images, wrapping around a data set smaller than the batches.
                int size = data.ImageSize;
                for (int i = 0; i < config.Batch; i++)
                {
                    int index = (b * config.Batch + i) % data.Count;
                    data.Images.Span.Slice(index * size, size).CopyTo(_images[b].Span.Slice(i * size, size));
                    _labels[b][i] = data.Labels.Span[index];
                }
                continue;
            }
            for (int i = 0; i < _images[b].Length; i++) _images[b].Span[i] = (float)rng.NextDouble();
            for (int i = 0; i < config.Batch; i++) _labels[b][i] = rng.NextInt(classes);
        }
        int layers = _model.Layers.Count;
        (_forward, _backward, _update, _whole, _evalForward) = (new(timedSteps), new(timedSteps), new(timedSteps), new(timedSteps), new(timedSteps));
        _backwardPerLayer = Enumerable.Range(0, layers).Select(_ => new List<double>(timedSteps)).ToArray();
        _forwardPerLayer = Enumerable.Range(0, layers).Select(_ => new List<double>(timedSteps)).ToArray();
        _backwardTicksBefore = new long[layers];
        _forwardTicksBefore = new long[layers];
    }

    /// <summary>
    /// A network file's model: dense (any "meprop" of the file dropped) or with meProp at the configuration's
    /// ratio and decay on its meProp layers (the file's own "meprop" settings replaced).
    /// </summary>
    private static Sequential BuildNetwork(NetworkSpec spec, StepConfig config, ComputeContext compute, ulong seed)
    {
        var model = NetworkFactory.Build(spec, compute, seed);
        foreach (var layer in model.AllLayers.OfType<IMePropLayer>()) layer.Sparsifier = null;
        if (config.TopK is double k)
            MePropSetup.Attach(model, k, config.Decay, MeProp.Sparsity.DecayShape.Full, null,
                config.MePropLayers ?? StepConfig.DefaultMePropLayers(model), seed);
        return model;
    }

    /// <summary>Runs <paramref name="steps"/> training steps; timed ones are recorded, untimed ones warm up.</summary>
    public void RunSteps(int steps, bool timed)
    {
        var layers = _model.Layers;
        if (timed && _whole.Count == 0)
            foreach (var layer in _model.AllLayers.OfType<IMePropLayer>()) layer.Counters.Reset();
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        for (int s = 0; s < steps; s++, _stepsRun++)
        {
            var x = _images[_stepsRun % Batches];
            var y = _labels[_stepsRun % Batches];
            for (int l = 0; l < layers.Count; l++) (_backwardTicksBefore[l], _forwardTicksBefore[l]) = (_model.BackwardTicks(l), _model.ForwardTicks(l));
            long t0 = Stopwatch.GetTimestamp();
            _loss.Forward(_model.Forward(x, training: true), y);
            long t1 = Stopwatch.GetTimestamp();
            _optimizer.BeginStep(); // before backward: the optimizer applies its update in it where that pays (fused)
            _model.Backward(_loss.Gradient);
            long t2 = Stopwatch.GetTimestamp();
            _optimizer.FinishStep();
            long t3 = Stopwatch.GetTimestamp();
            if (!timed) continue;
            _forward.Add(Ms(t1 - t0));
            _backward.Add(Ms(t2 - t1));
            _update.Add(Ms(t3 - t2));
            _whole.Add(Ms(t3 - t0));
            for (int l = 0; l < layers.Count; l++)
            {
                _backwardPerLayer[l].Add(Ms(_model.BackwardTicks(l) - _backwardTicksBefore[l]));
                _forwardPerLayer[l].Add(Ms(_model.ForwardTicks(l) - _forwardTicksBefore[l]));
            }
        }
        if (timed) _allocated += GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
    }

    /// <summary>Runs <paramref name="count"/> evaluation forwards (training: false) of the current weights; timed ones are recorded.</summary>
    public void RunEvalForwards(int count, bool timed)
    {
        for (int s = 0; s < count; s++)
        {
            var x = _images[(_stepsRun + s) % Batches];
            long t0 = Stopwatch.GetTimestamp();
            _model.Forward(x, training: false);
            if (timed) _evalForward.Add(Ms(Stopwatch.GetTimestamp() - t0));
        }
    }

    /// <summary>Medians over the timed steps so far.</summary>
    public StepRecord Record()
    {
        var layers = _model.Layers;
        var whole = _whole.ToArray();
        return new StepRecord
        {
            Engine = "meprop",
            Mode = _config.Mode,
            Topk = _config.TopK,
            Decay = _config.TopK is null ? 0 : _config.Decay,
            ExactSparsity = _config.ExactSparsity,
            Data = _config.Inputs?.DataDirectory ?? "synthetic",
            Weights = _config.Inputs?.Weights,
            ExactSparseFraction = _model.AllLayers.OfType<IMePropLayer>().Where(l => l.Counters.Backwards > 0)
                .ToDictionary(l => l.Name, l => Math.Round((double)l.Counters.ExactSparseBackwards / l.Counters.Backwards, 4)),
            GradientDensity = _model.AllLayers.OfType<IMePropLayer>().Where(l => l.Counters.Gradient.Total > 0)
                .ToDictionary(l => l.Name, l => Math.Round(l.Counters.Gradient.DensityBefore, 4)),
            BatchNorm = _config.BatchNorm,
            Batch = _config.Batch,
            Threads = _config.Threads,
            Steps = whole.Length,
            ForwardMs = Percentile(_forward.ToArray(), 0.5),
            BackwardMs = Percentile(_backward.ToArray(), 0.5),
            UpdateMs = Percentile(_update.ToArray(), 0.5),
            StepMs = Percentile(whole, 0.5),
            StepMsP10 = Percentile(whole, 0.1),
            StepMsP90 = Percentile(whole, 0.9),
            EvalForwardMs = _evalForward.Count == 0 ? null : Percentile(_evalForward.ToArray(), 0.5),
            BackwardMsPerLayer = layers.Select((l, i) => (l, i)).Where(p => p.l.Parameters.Count > 0 || p.l is MaxPool2d)
                .ToDictionary(p => p.l.Name, p => Math.Round(Percentile(_backwardPerLayer[p.i].ToArray(), 0.5), 4)),
            ForwardMsPerLayer = layers.Select((l, i) => (l, i)).ToDictionary(p => p.l.Name, p => Math.Round(Percentile(_forwardPerLayer[p.i].ToArray(), 0.5), 4)),
            AllocatedBytesPerStep = whole.Length == 0 ? null : (double)_allocated / whole.Length,
            ForwardMacsPerExample = _summary.ForwardMacs,
            BackwardMacsPerExample = _summary.BackwardMacs,
        };
    }

    /// <summary>
    /// GFLOP/s of a step doing <paramref name="macsPerExample"/> multiply-adds per example (2 FLOPs each) on
    /// <paramref name="batch"/> examples in <paramref name="stepMs"/> milliseconds.
    /// </summary>
    public static double DenseEquivalentGflops(long macsPerExample, int batch, double stepMs) =>
        2.0 * macsPerExample * batch / (stepMs * 1e-3) / 1e9;

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
