using System.Diagnostics;
using System.Text.Json;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Sparsity;
using MeProp.Tensors;

namespace MeProp.Training;

/// <summary>Receives progress while training runs (the CLI draws a progress bar from it).</summary>
public interface ITrainingObserver
{
    void EpochStarted(int epoch, int epochs, int steps);
    /// <summary>Called after every step with the running mean loss of the epoch.</summary>
    void StepCompleted(int step, double meanLoss);
    void EpochCompleted(EpochMetrics metrics);
}

/// <summary>
/// The training loop of the papers' protocol: per epoch, train on the shuffled training split, then
/// measure dev and test accuracy; the best epoch is the one with the best dev accuracy and its test
/// accuracy is the result. With an output directory it writes metrics.jsonl (one line per epoch),
/// summary.json, best.safetensors and last.safetensors (with optimizer state for resume).
/// </summary>
public sealed class Trainer
{
    public const string LastCheckpoint = "last.safetensors";
    public const string BestCheckpoint = "best.safetensors";
    public const string MetricsFile = "metrics.jsonl";
    public const string SummaryFile = "summary.json";

    private readonly TrainOptions _options;
    private readonly Sequential _model;
    private readonly IOptimizer _optimizer;
    private readonly Adam? _fusedAdam;
    /// <summary>The epoch an earlier <see cref="Run"/> stopped in, by an exception; Run refuses to go on until a Resume.</summary>
    private int? _interruptedEpoch;
    private readonly ComputeContext _compute;
    private readonly DatasetSplit _split;
    private readonly Dataset _test;
    private readonly string? _outDirectory;
    private readonly SoftmaxCrossEntropy _loss = new();
    private TrainProgress _progress = new();
    private readonly Augmentation? _augmentation;
    /// <summary>With a <see cref="TopKSchedule"/>: each meProp layer's sparsifier and its own ratio (what a constant schedule keeps).</summary>
    private readonly (string Layer, GradientSparsifier Sparsifier, double OwnRatio)[] _scheduled = [];

    /// <summary>
    /// Trains the network <paramref name="options"/> describe (a built-in one or its <see cref="ModelOptions.Network"/>),
    /// with meProp and the optimizer as the options say: what `meprop train` runs, and what resume rebuilds.
    /// </summary>
    public Trainer(TrainOptions options, ComputeContext compute, DatasetSplit split, Dataset test, string? outDirectory)
        : this(Validated(options, split, test, out var model, compute), model, CreateOptimizer(options, model, compute), compute, split, test, outDirectory)
    {
    }

    /// <summary>
    /// Trains a model the caller built (with meProp attached to the layers the caller chose) with the caller's
    /// optimizer. <paramref name="options"/> gives the loop's settings (<see cref="TrainOptions.Epochs"/>,
    /// <see cref="TrainOptions.BatchSize"/>, <see cref="TrainOptions.Seed"/> of the shuffling and augmentation,
    /// evaluation batch size, <see cref="TrainOptions.FusedUpdate"/>, <see cref="TrainOptions.ExactSparsity"/>,
    /// augmentation, and a <see cref="TrainOptions.TopKSchedule"/> for the meProp layers the model has); its model,
    /// meProp and optimizer fields are not used. summary.json and checkpoints record the model's own description
    /// (<see cref="Sequential.Spec"/>) with the meProp its layers have, attached by hand included
    /// (<see cref="NetworkFactory.WithAttachedMeProp"/>), and the settings of the optimizer when it is
    /// <see cref="Adam"/> or <see cref="SgdMomentum"/>: `meprop train --resume` rebuilds the same run.
    /// </summary>
    public Trainer(Sequential model, IOptimizer optimizer, TrainOptions options, ComputeContext compute, DatasetSplit split, Dataset test, string? outDirectory)
        : this(Recorded(CheckData(options, split, test), model, optimizer), model, optimizer, compute, split, test, outDirectory)
    {
    }

    /// <summary>What a run of the caller's model and optimizer records as its configuration.</summary>
    private static TrainOptions Recorded(TrainOptions options, Sequential model, IOptimizer optimizer) => (optimizer switch
    {
        Adam adam => options with { Optimizer = "adam", LearningRate = adam.LearningRate, Beta1 = adam.Beta1, Beta2 = adam.Beta2, Epsilon = adam.Epsilon },
        SgdMomentum sgd => options with { Optimizer = "sgd", LearningRate = sgd.LearningRate, Momentum = sgd.Momentum },
        _ => options,
    }) with
    {
        ModelOptions = new ModelOptions { Model = "custom", Network = model.Spec is { } spec ? NetworkFactory.WithAttachedMeProp(spec, model) : null },
        // The model's layers say where meProp is; options for attaching it would attach it again on a rebuild.
        TopK = null, LayerRatios = null, Decay = 0, DecayShape = DecayShape.Full, Selection = null, MePropLayers = null, MassFraction = null, ZeroMean = false,
    };

    private Trainer(TrainOptions options, Sequential model, IOptimizer optimizer, ComputeContext compute, DatasetSplit split, Dataset test, string? outDirectory)
    {
        _options = options;
        _compute = compute;
        _split = split;
        _test = test;
        _outDirectory = outDirectory;
        _model = model;
        _optimizer = optimizer;
        // Found now rather than at the end of the first epoch, when that epoch's work would be lost.
        int lastBatch = split.Train.Count % options.BatchSize;
        if ((lastBatch == 1 || options.BatchSize == 1) && model.AllLayers.OfType<BatchNorm>().FirstOrDefault(b => b.ValuesPerExample == 1) is { } perFeature)
            throw new ArgumentException($"{perFeature.Name} normalises each feature over the batch alone, and a batch of 1 image would come (batch size {options.BatchSize}, {split.Train.Count} training images); choose a batch size of 2 or more that leaves a last batch of 0 or at least 2");
        var augmentation = new Augmentation(options.AugmentPadding, options.AugmentFlip, options.Seed);
        _augmentation = augmentation.Active ? augmentation : null;
        if (options.TopKSchedule is not null)
        {
            _scheduled = [.. model.AllLayers.OfType<IMePropLayer>().Where(l => l.Sparsifier is not null).Select(l => (l.Name, l.Sparsifier!, l.Sparsifier!.Ratio))];
            if (_scheduled.Length == 0) throw new ArgumentException("a top-k schedule needs meProp on some layer, and the model has none (it would train dense)");
        }
        model.SetExactSparsity(options.ExactSparsity);
        if (_optimizer is Adam adam && options.FusedUpdate)
        {
            _fusedAdam = adam;
            adam.FuseIntoBackward = true;
        }
    }

    private static TrainOptions CheckData(TrainOptions options, DatasetSplit split, Dataset test)
    {
        options.Validate();
        var train = split.Train;
        if (test.Channels != train.Channels || test.Height != train.Height || test.Width != train.Width || test.Classes != train.Classes)
            throw new ArgumentException($"the test set's images [{test.Channels}, {test.Height}, {test.Width}] and {test.Classes} classes differ from the training set's [{train.Channels}, {train.Height}, {train.Width}] and {train.Classes}");
        return options;
    }

    private static TrainOptions Validated(TrainOptions options, DatasetSplit split, Dataset test, out Sequential model, ComputeContext compute)
    {
        CheckData(options, split, test);
        var train = split.Train;
        model = BuildModel(options, train.Channels, train.Height, train.Width, train.Classes, compute);
        return options;
    }

    private static IOptimizer CreateOptimizer(TrainOptions options, Sequential model, ComputeContext compute) =>
        options.Optimizer == "sgd"
            ? new SgdMomentum(model.Parameters, options.LearningRate, options.Momentum)
            : new Adam(model.Parameters, compute.Pool, options.LearningRate, options.Beta1, options.Beta2, options.Epsilon);

    /// <summary>The model of a configuration, with meProp attached to the chosen layers when --topk is set.</summary>
    public static Sequential BuildModel(TrainOptions options, int channels, int height, int width, int classes, ComputeContext compute)
    {
        var model = ModelBuilder.Build(options.ModelOptions, channels, height, width, classes, compute, options.Seed);
        if (options.UsesMeProp)
            MePropSetup.Attach(model, options.TopK, options.LayerRatios, options.Decay, options.DecayShape, options.Selection, options.MePropLayers, options.Seed, options.MassFraction, options.ZeroMean);
        return model;
    }

    /// <summary>The top-level settings (JSON names) in which two configurations differ, but for those <see cref="Resume"/> lets differ.</summary>
    internal static List<string> ConfigurationDifferences(TrainOptions a, TrainOptions b)
    {
        JsonElement Comparable(TrainOptions o) =>
            JsonSerializer.SerializeToElement(o with { Epochs = 1, Threads = 1, FusedUpdate = true, EvalBatchSize = 1, Data = null }, Json.Options);
        var left = Comparable(a).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetRawText());
        var right = Comparable(b).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetRawText());
        return left.Keys.Union(right.Keys)
            .Where(name => left.GetValueOrDefault(name) != right.GetValueOrDefault(name)).ToList();
    }

    /// <summary>Called between an epoch's metrics line and its checkpoints, so tests can crash a run there.</summary>
    internal Action<int>? MetricsWritten { get; set; }

    public Sequential Model => _model;
    public IOptimizer Optimizer => _optimizer;
    public TrainProgress Progress => _progress;

    /// <summary>
    /// Continues from a checkpoint written by this trainer's configuration (the last completed epoch). A
    /// checkpoint of another configuration is refused, naming the settings that differ: only the epochs,
    /// threads, fused update and evaluation batch, which do not change the results, may differ, and the data
    /// source the CLI records (the data sets are this trainer's own; the CLI checks their fingerprint).
    /// </summary>
    public void Resume(string checkpointPath)
    {
        var differing = ConfigurationDifferences(Checkpoint.ReadOptions(checkpointPath), _options);
        if (differing.Count > 0)
            throw new ArgumentException($"{checkpointPath}: written by a run whose {string.Join(", ", differing)} differ from this trainer's; resuming it exactly needs the run's configuration");
        _progress = Checkpoint.Load(checkpointPath, _model, _optimizer)
            ?? throw new CheckpointFormatException($"{checkpointPath}: no training progress in the metadata; it cannot be resumed");
        // A checkpoint is taken between steps, where every gradient is zero; a step that threw may have left
        // some added into (an optimizer that does not fuse its update clears them only when it updates).
        foreach (var p in _model.Parameters) p.Gradient.Clear();
        _interruptedEpoch = null;
        if (_outDirectory is not null) TrimMetrics(Path.Combine(_outDirectory, MetricsFile), _progress.EpochsCompleted);
    }

    /// <summary>
    /// Trains the remaining epochs and returns the summary. A top-k schedule sets the meProp layers' ratios
    /// epoch by epoch; afterwards (or when an epoch throws) each layer has its own ratio again, as built.
    /// </summary>
    public TrainSummary Run(ITrainingObserver? observer = null)
    {
        try
        {
            return RunEpochs(observer);
        }
        finally
        {
            foreach (var (_, sparsifier, own) in _scheduled)
            {
                sparsifier.Ratio = own;
                sparsifier.KeepAll = false;
            }
        }
    }

    private TrainSummary RunEpochs(ITrainingObserver? observer)
    {
        if (_outDirectory is not null)
        {
            // A fresh run appending to an earlier run's metrics would mix the two (RunDirectory claims directories up front).
            if (_progress.EpochsCompleted == 0 && File.Exists(Path.Combine(_outDirectory, MetricsFile)))
                throw new RunDirectoryInUseException($"{_outDirectory}: holds an earlier run ({MetricsFile}); resume it or train into another directory");
            Directory.CreateDirectory(_outDirectory);
        }
        if (_interruptedEpoch is int interrupted)
            throw new InvalidOperationException($"this trainer's last run stopped part-way through epoch {interrupted}, which left the model and optimizer part-way through it: Resume from a checkpoint before running again (or, with none, train a new model with a new trainer)");
        var loader = new BatchLoader(_split.Train, _options.BatchSize, shuffle: true, _options.Seed);
        var images = new Tensor(0);
        var labels = new int[_options.BatchSize];
        double finalTest = double.NaN;
        for (int epoch = _progress.EpochsCompleted + 1; epoch <= _options.Epochs; epoch++)
        {
            EpochMetrics metrics;
            try
            {
                metrics = TrainEpoch(epoch, loader, images, labels, observer);
            }
            catch
            {
                // An epoch that throws (a diverged loss, a layer's or an observer's exception) leaves the
                // weights part-way through it; the optimizer's open step is closed so that a Resume can reuse it.
                _fusedAdam?.AbandonStep();
                _interruptedEpoch = epoch;
                throw;
            }
            // The epoch's last update is checked by no loss: weights it made NaN or infinite must not be saved
            // as a checkpoint to resume from.
            if (_model.Parameters.FirstOrDefault(p => !AllFinite(p.Value.Span)) is { } diverged)
            {
                _interruptedEpoch = epoch;
                throw new InvalidOperationException($"training diverged: {diverged.Name} holds NaN or infinity after epoch {epoch}; try a smaller learning rate");
            }
            finalTest = metrics.TestAccuracy;
            // Without a dev split the latest epoch counts as the best: test accuracy must not pick it.
            bool better = metrics.DevAccuracy is not double dev || _progress.BestEpoch == 0 || dev > _progress.BestDevAccuracy;
            _progress = _progress with
            {
                EpochsCompleted = epoch,
                FirstEpochLoss = _progress.FirstEpochLoss ?? metrics.TrainLoss,
                TrainSeconds = _progress.TrainSeconds + metrics.EpochSeconds,
            };
            if (better)
                _progress = _progress with { BestEpoch = epoch, BestDevAccuracy = metrics.DevAccuracy, BestTestAccuracy = metrics.TestAccuracy };
            if (_outDirectory is not null)
            {
                // The metrics line goes first: a crash before the checkpoint below leaves a line for an epoch
                // the checkpoint has not completed, which Resume drops and the resumed run writes again
                // (identically, runs being deterministic). The other order could lose the line for good.
                File.AppendAllText(Path.Combine(_outDirectory, MetricsFile), JsonSerializer.Serialize(metrics, Json.Line) + "\n");
                MetricsWritten?.Invoke(epoch);
                if (better) Checkpoint.SaveModel(Path.Combine(_outDirectory, BestCheckpoint), _model, _options, _progress);
                Checkpoint.Save(Path.Combine(_outDirectory, LastCheckpoint), _model, _optimizer, _options, _progress);
            }
            observer?.EpochCompleted(metrics);
        }
        if (double.IsNaN(finalTest)) finalTest = _progress.BestTestAccuracy;
        var summary = new TrainSummary
        {
            Config = _options,
            BestEpoch = _progress.BestEpoch,
            DevAccuracy = _progress.BestDevAccuracy,
            TestAccuracy = _progress.BestTestAccuracy,
            FinalTestAccuracy = ReadFinalTestAccuracy() ?? finalTest,
            TrainSeconds = _progress.TrainSeconds,
            EpochsCompleted = _progress.EpochsCompleted,
            ParameterCount = _model.ParameterCount,
        };
        if (_outDirectory is not null)
            AtomicFile.WriteAllText(Path.Combine(_outDirectory, SummaryFile), JsonSerializer.Serialize(summary, Json.Options) + "\n");
        return summary;
    }

    private EpochMetrics TrainEpoch(int epoch, BatchLoader loader, Tensor images, int[] labels, ITrainingObserver? observer)
    {
        loader.StartEpoch(epoch);
        _augmentation?.StartEpoch(epoch);
        var ratios = ApplySchedule(epoch);
        observer?.EpochStarted(epoch, _options.Epochs, loader.BatchCount);
        _model.ResetTimings();
        var workLayers = _model.AllLayers.OfType<IMePropLayer>().ToArray();
        foreach (var layer in workLayers) layer.Counters.Reset();
        long forwardTicks = 0, backwardTicks = 0, updateTicks = 0;
        long epochStart = Stopwatch.GetTimestamp();
        double lossSum = 0;
        long seen = 0, correct = 0;
        int classes = 0;
        for (int batch = 0; batch < loader.BatchCount; batch++)
        {
            int n = loader.FillBatch(batch, images, labels);
            _augmentation?.Apply(images, n);
            long t0 = Stopwatch.GetTimestamp();
            var logits = _model.Forward(images, training: true);
            classes = logits.Dim(1);
            double loss = _loss.Forward(logits, labels.AsSpan(0, n));
            long t1 = Stopwatch.GetTimestamp();
            // The step is opened before backward so that the optimizer can apply its update there (Adam.FuseIntoBackward).
            _fusedAdam?.BeginStep();
            _model.Backward(_loss.Gradient);
            long t2 = Stopwatch.GetTimestamp();
            if (_fusedAdam is not null) _fusedAdam.FinishStep();
            else _optimizer.Update();
            long t3 = Stopwatch.GetTimestamp();
            forwardTicks += t1 - t0; backwardTicks += t2 - t1; updateTicks += t3 - t2;
            correct += SoftmaxCrossEntropy.CountCorrect(logits, labels.AsSpan(0, n));
            lossSum += loss * n;
            seen += n;
            observer?.StepCompleted(batch + 1, lossSum / seen);
            if (!double.IsFinite(loss))
                throw new InvalidOperationException($"training diverged: loss is {loss} at epoch {epoch}, step {batch + 1}; try a smaller learning rate");
        }
        double trainSeconds = Seconds(Stopwatch.GetTimestamp() - epochStart);
        long evalStart = Stopwatch.GetTimestamp();
        double? dev = _split.Dev is { } devSet ? Evaluate(devSet) : null;
        double test = Evaluate(_test);
        double evalSeconds = Seconds(Stopwatch.GetTimestamp() - evalStart);
        return new EpochMetrics
        {
            Epoch = epoch,
            Warnings = DivergenceWarning(lossSum / seen, classes) is string warning ? [warning] : null,
            TrainLoss = lossSum / seen,
            TrainAccuracy = (double)correct / seen,
            DevAccuracy = dev,
            TestAccuracy = test,
            EpochSeconds = trainSeconds + evalSeconds,
            ForwardSeconds = Seconds(forwardTicks),
            BackwardSeconds = Seconds(backwardTicks),
            UpdateSeconds = Seconds(updateTicks),
            EvalSeconds = evalSeconds,
            BackwardSecondsPerLayer = _model.BackwardSeconds(),
            BackwardMacs = workLayers.ToDictionary(l => l.Name, l => l.Counters.BackwardMacs),
            DenseBackwardMacs = workLayers.ToDictionary(l => l.Name, l => l.Counters.DenseBackwardMacs),
            GradientDensity = workLayers.Where(l => l.Sparsifier is not null).ToDictionary(l => l.Name, l => l.Counters.Gradient.DensityBefore),
            KeptFraction = workLayers.Where(l => l.Sparsifier is not null).ToDictionary(l => l.Name, l => l.Counters.Gradient.KeptFraction),
            TopKRatio = ratios,
        };
    }

    /// <summary>
    /// Sets each meProp layer's ratio for <paramref name="epoch"/> from the schedule (a function of the epoch
    /// number alone, so a resumed run takes the same ratios) and returns them by layer; null without a schedule.
    /// </summary>
    private Dictionary<string, double>? ApplySchedule(int epoch)
    {
        if (_options.TopKSchedule is not { } schedule) return null;
        double? ratio = schedule.RatioAt(epoch, _options.Epochs);
        bool dense = schedule.IsDense(epoch);
        var ratios = new Dictionary<string, double>();
        foreach (var (layer, sparsifier, own) in _scheduled)
        {
            sparsifier.KeepAll = dense;
            sparsifier.Ratio = ratio ?? own;
            ratios[layer] = sparsifier.Ratio;
        }
        return ratios;
    }

    /// <summary>
    /// A warning when the epoch's mean loss is over 100 times the smaller of the first epoch's and that of a
    /// uniform guess over the classes (ln C, where training starts): the run is diverging although every
    /// value is still finite (NaN or infinity stops it outright).
    /// </summary>
    private string? DivergenceWarning(double loss, int classes)
    {
        double reference = Math.Min(Math.Log(classes), _progress.FirstEpochLoss ?? double.PositiveInfinity);
        return loss > 100 * reference
            ? $"train loss {loss:G4} is over 100x {reference:G4} (the first epoch's, or a uniform guess's): training is diverging; try a smaller learning rate"
            : null;
    }

    /// <summary>Fraction of <paramref name="data"/> the model classifies correctly.</summary>
    public double Evaluate(Dataset data) => Evaluate(_model, data, _options.EvalBatchSize);

    public static double Evaluate(Sequential model, Dataset data, int batchSize)
    {
        var loader = new BatchLoader(data, batchSize, shuffle: false);
        loader.StartEpoch(0);
        var images = new Tensor(0);
        var labels = new int[batchSize];
        long correct = 0;
        for (int batch = 0; batch < loader.BatchCount; batch++)
        {
            int n = loader.FillBatch(batch, images, labels);
            var logits = model.Forward(images, training: false);
            correct += SoftmaxCrossEntropy.CountCorrect(logits, labels.AsSpan(0, n));
        }
        return (double)correct / data.Count;
    }

    private static double Seconds(long ticks) => ticks / (double)Stopwatch.Frequency;

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (float value in values)
            if (!float.IsFinite(value)) return false;
        return true;
    }

    /// <summary>
    /// Keeps only the metrics lines of epochs a resumed checkpoint has completed. A torn last line (a crash
    /// while it was appended) is dropped with the others past the checkpoint; a bad line before the last is
    /// damage this cannot repair and an error naming the line.
    /// </summary>
    private static void TrimMetrics(string path, int epochsCompleted)
    {
        if (!File.Exists(path)) return;
        var lines = File.ReadAllLines(path).Where(line => line.Length > 0).ToList();
        var kept = new List<string>();
        for (int i = 0; i < lines.Count; i++)
        {
            EpochMetrics? metrics = null;
            try { metrics = JsonSerializer.Deserialize<EpochMetrics>(lines[i], Json.Line); }
            catch (JsonException) when (i == lines.Count - 1) { }
            catch (JsonException e) { throw new CheckpointFormatException($"{path}: line {i + 1} is not a metrics record ({e.Message})"); }
            if (metrics is not null && metrics.Epoch <= epochsCompleted) kept.Add(lines[i]);
        }
        var epochs = kept.Select(line => JsonSerializer.Deserialize<EpochMetrics>(line, Json.Line)!.Epoch).ToList();
        if (!epochs.SequenceEqual(Enumerable.Range(1, epochsCompleted)))
            throw new CheckpointFormatException($"{path}: holds epochs [{string.Join(", ", epochs)}] but the checkpoint has completed epochs 1-{epochsCompleted}");
        AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
    }

    private double? ReadFinalTestAccuracy()
    {
        if (_outDirectory is null) return null;
        string path = Path.Combine(_outDirectory, MetricsFile);
        if (!File.Exists(path)) return null;
        var last = File.ReadAllLines(path).LastOrDefault(l => l.Length > 0);
        return last is null ? null : JsonSerializer.Deserialize<EpochMetrics>(last, Json.Line)?.TestAccuracy;
    }
}
