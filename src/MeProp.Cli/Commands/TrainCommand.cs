using System.CommandLine;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>`meprop train`: trains a model under the paper's protocol, optionally resuming.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var activation = CommonOptions.Activation();
        var hiddenSize = PositiveInt("--hidden-size", "MLP hidden width", 500);
        var hiddenLayers = new Option<int>("--hidden-layers") { Description = "MLP hidden layers", DefaultValueFactory = _ => 2 };
        hiddenLayers.Require(v => v >= 0, "--hidden-layers must be >= 0");
        var epochs = new Option<int>("--epochs") { Description = "Epochs to train", DefaultValueFactory = _ => 1 };
        epochs.Require(v => v >= 1, "--epochs must be >= 1");
        var batch = PositiveInt("--batch-size", "Mini-batch size (the paper uses 10)", 10);
        var lr = new Option<float>("--lr") { Description = "Learning rate", DefaultValueFactory = _ => 1e-3f };
        lr.Require(v => v > 0 && float.IsFinite(v), "--lr must be a positive finite number");
        var optimizer = new Option<string>("--optimizer") { Description = "adam or sgd (with momentum)", DefaultValueFactory = _ => "adam" };
        optimizer.AcceptOnlyFromAmong("adam", "sgd");
        var momentum = new Option<float>("--momentum") { Description = "SGD momentum (with --optimizer sgd only)", DefaultValueFactory = _ => 0.9f };
        momentum.Require(v => v >= 0 && v < 1, "--momentum must be in [0, 1)");
        var seed = new Option<ulong>("--seed") { Description = "Seed of initialisation and shuffling", DefaultValueFactory = _ => 1UL };
        var threads = CommonOptions.Threads();
        var data = CommonOptions.DataDirectory();
        var devSize = new Option<int>("--dev-size") { Description = "Training images held out as the dev split (the first N)", DefaultValueFactory = _ => 5000 };
        devSize.Require(v => v >= 0, "--dev-size must be >= 0");
        var maxTrain = new Option<int?>("--max-train") { Description = "Use only the first N training images (after the dev split), for quick runs" };
        maxTrain.Require(v => v is null or >= 1, "--max-train must be >= 1");
        var output = new Option<string?>("--out") { Description = "Directory for metrics.jsonl, summary.json and checkpoints" };
        var normalize = new Option<bool>("--normalize") { Description = "Normalise the input per channel with the mean and std of the training split (recorded in the network, so eval, predict and export apply it)" };
        var mean = FloatList("--mean", "Per-channel input mean, comma-separated (with --std; instead of --normalize's computed values)");
        var std = FloatList("--std", "Per-channel input standard deviation, comma-separated (with --mean)");
        var augmentCrop = new Option<int>("--augment-crop") { Description = "Training augmentation: random crop after zero-padding by this many pixels (as torchvision's RandomCrop(size, padding))" }
            .Require(v => v >= 0, "--augment-crop must be >= 0");
        var augmentFlip = new Option<bool>("--augment-flip") { Description = "Training augmentation: mirror images left-right with probability 1/2" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Start a new run in --out even if it holds an earlier run, which is moved aside to DIR.old-N (never deleted; refused while another process trains in it)" };
        var resume = new Option<string?>("--resume") { Description = "Continue the run in this directory from its last.safetensors (its configuration is used; --epochs may extend it; a finished run missing its summary.json gets it written)" };

        var noFusedUpdate = new Option<bool>("--no-fused-update") { Description = "With Adam, update the linear layers in the optimizer's own pass instead of during their backward (same results, slower)" };
        var exactSparsity = CommonOptions.ExactSparsityOption();
        var batchNorm = new Option<bool>("--batch-norm") { Description = "Built-in networks: batch normalization after each hidden conv and linear layer (before the nonlinearity)" };
        var mePropOptions = new MePropCliOptions();
        var topKSchedule = new Option<string?>("--topk-schedule")
        {
            Description = "meProp ratio over the epochs: constant (each layer's --topk), linear:START:END or cosine:START:END (from START at epoch 1 to END at the last, for every meProp layer)",
        };
        var denseWarmup = new Option<int>("--dense-warmup") { Description = "meProp: train the first N epochs dense (ratio 1)" };
        denseWarmup.Require(v => v >= 0, "--dense-warmup must be >= 0");
        var denseEvery = new Option<int>("--dense-every") { Description = "meProp: train every N-th epoch dense (ratio 1); 0 for none" };
        denseEvery.Require(v => v >= 0, "--dense-every must be >= 0");

        var command = new Command("train", "Train a network (paper-cnn, mlp or a JSON network file) on a data directory (MNIST by default) and report test accuracy at the best dev epoch")
        {
            model, activation, hiddenSize, hiddenLayers, batchNorm, epochs, batch, lr, optimizer, momentum, seed, threads, data, devSize, maxTrain, normalize, mean, std, augmentCrop, augmentFlip, output, overwrite, resume, noFusedUpdate,
            exactSparsity, topKSchedule, denseWarmup, denseEvery,
        };
        mePropOptions.AddTo(command);
        var configurationOptions = Configuration(
            (model, t => t.ModelOptions.Model), (activation, t => t.ModelOptions.Activation), (hiddenSize, t => t.ModelOptions.HiddenSize),
            (hiddenLayers, t => t.ModelOptions.HiddenLayers), (batchNorm, t => t.ModelOptions.BatchNorm), (batch, t => t.BatchSize),
            (lr, t => t.LearningRate), (optimizer, t => t.Optimizer), (momentum, t => t.Momentum), (seed, t => t.Seed),
            (devSize, t => t.DevSize), (maxTrain, t => t.MaxTrain), (mePropOptions.TopK, MePropCliOptions.TopKText), (mePropOptions.Decay, t => t.Decay),
            (mePropOptions.DecayShape, t => t.DecayShape), (mePropOptions.Selection, t => t.Selection), (mePropOptions.Layers, t => t.MePropLayers), (mePropOptions.MassFraction, t => t.MassFraction), (mePropOptions.ZeroMean, t => t.ZeroMean),
            (augmentCrop, t => t.AugmentPadding), (augmentFlip, t => t.AugmentFlip), (exactSparsity, t => t.ExactSparsity.ToString().ToLowerInvariant()),
            (topKSchedule, ScheduleText), (denseWarmup, t => t.TopKSchedule?.DenseWarmup ?? 0), (denseEvery, t => t.TopKSchedule?.DenseEvery ?? 0));
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            string? resumeDirectory = parse.GetValue(resume);
            string? outDirectory = parse.GetValue(output);
            var fresh = mePropOptions.Apply(parse, resuming: resumeDirectory is not null, options: new TrainOptions
            {
                ModelOptions = CommonOptions.ModelOptions(parse.GetValue(model)!) with
                {
                    Activation = CommonOptions.ParseActivation(parse.GetValue(activation)!),
                    HiddenSize = parse.GetValue(hiddenSize),
                    HiddenLayers = parse.GetValue(hiddenLayers),
                    BatchNorm = parse.GetValue(batchNorm),
                },
                Epochs = parse.GetValue(epochs),
                BatchSize = parse.GetValue(batch),
                LearningRate = parse.GetValue(lr),
                Optimizer = parse.GetValue(optimizer)!,
                Momentum = parse.GetValue(momentum),
                Seed = parse.GetValue(seed),
                Threads = parse.GetValue(threads),
                DevSize = parse.GetValue(devSize),
                MaxTrain = parse.GetValue(maxTrain),
                FusedUpdate = !parse.GetValue(noFusedUpdate),
                ExactSparsity = CommonOptions.ParseExactSparsity(parse.GetValue(exactSparsity)!),
                AugmentPadding = parse.GetValue(augmentCrop),
                AugmentFlip = parse.GetValue(augmentFlip),
            });
            fresh = fresh with { TopKSchedule = Schedule(parse.GetValue(topKSchedule), parse.GetValue(denseWarmup), parse.GetValue(denseEvery)) };
            TrainOptions options;
            string? checkpoint = null;
            if (resumeDirectory is not null)
            {
                if (outDirectory is not null && Path.GetFullPath(outDirectory) != Path.GetFullPath(resumeDirectory))
                    throw new ArgumentException("--out and --resume name different directories; a resumed run writes into its own directory");
                if (parse.GetValue(overwrite)) throw new ArgumentException("--overwrite starts a new run; it cannot go with --resume");
                checkpoint = Path.Combine(resumeDirectory, Trainer.LastCheckpoint);
                if (!File.Exists(checkpoint)) throw new ArgumentException($"--resume: {checkpoint} does not exist");
                var stored = Checkpoint.ReadOptions(checkpoint);
                // A resumed run keeps its configuration; only what does not change the results may be given anew.
                foreach (var (option, value) in configurationOptions)
                    if (parse.GetResult(option) is { Implicit: false } && value(fresh) != value(stored))
                        throw new ArgumentException($"{option.Name} {value(fresh)} differs from the resumed run's {value(stored)}; a resumed run keeps its configuration (start a new run to change it)");
                options = stored;
                if (parse.GetResult(epochs) is { Implicit: false }) options = options with { Epochs = parse.GetValue(epochs) };
                if (parse.GetResult(threads) is { Implicit: false }) options = options with { Threads = parse.GetValue(threads) };
                if (parse.GetValue(noFusedUpdate)) options = options with { FusedUpdate = false };
                outDirectory = resumeDirectory;
            }
            else
            {
                if (fresh.TopKSchedule is not null && !fresh.UsesMeProp && !HasMeProp(fresh.ModelOptions.Network?.Layers))
                    throw new ArgumentException("--topk-schedule, --dense-warmup and --dense-every need --topk or a network file with \"meprop\" layers (without either, training is dense)");
                if (parse.GetResult(momentum) is { Implicit: false } && fresh.Optimizer != "sgd")
                    throw new ArgumentException($"--momentum is SGD's; {fresh.Optimizer} does not use it");
                options = fresh;
            }
            options.Validate();
            // Build the model once (a described network on its own input, a built-in one on MNIST's) so that
            // bad layers and layer names fail before any data is read.
            using (var probe = new ComputeContext(1))
            {
                var network = options.ModelOptions.Network;
                int[] input = network?.Input switch { { Length: 3 } shape => shape, [int features] => [1, 1, features], _ => [1, 28, 28] };
                Trainer.BuildModel(options, input[0], input[1], input[2], network?.Classes ?? MnistFiles.Classes, probe);
            }
            if (checkpoint is null && options.ModelOptions.Network?.Layers is [{ Type: "normalize" }, ..] && new Option[] { normalize, mean, std }.Any(o => parse.GetResult(o) is { Implicit: false }))
                throw new ArgumentException($"{options.ModelOptions.Model} starts with a normalize layer of its own; --normalize, --mean and --std would normalise the input twice");
            // The images: a resumed run's own (its recorded directory unless --data moves it; the content must
            // match what it was trained on), a new run's from --data, recorded for later resumes and evals.
            string dataDirectory = checkpoint is null ? CommonOptions.ResolveDataDirectory(parse.GetValue(data)) : CommonOptions.RunDataDirectory(parse.GetValue(data), options);
            var mnist = MeProp.Data.DataDirectory.Load(dataDirectory);
            var source = DataSource.Of(dataDirectory, mnist);
            if (options.Data is { } recorded && recorded.Fingerprint != source.Fingerprint)
                throw new ArgumentException($"the images in {source.Directory} are not the ones the run was trained on (read from {recorded.Directory}); resume it on those");
            options = options with { Data = source };
            var split = DatasetSplit.Create(mnist.Training, options.DevSize, options.MaxTrain);
            if (checkpoint is null)
                options = options with { ModelOptions = options.ModelOptions with { Normalization = Normalization(parse, normalize, mean, std, split.Train), ClassNames = [.. mnist.ClassNames] } };
            else if (new Option[] { normalize, mean, std }.Any(o => parse.GetResult(o) is { Implicit: false }))
            {
                // The normalisation is part of the resumed run's network; asking for the same one is no change.
                var asked = Normalization(parse, normalize, mean, std, split.Train);
                var trained = options.ModelOptions.Normalization;
                if (!SameNormalization(asked, trained))
                    throw new ArgumentException($"the input normalisation asked for ({NormalizationText(asked)}) differs from the resumed run's ({NormalizationText(trained)}); a resumed run keeps its configuration (start a new run to change it)");
            }
            var mode = checkpoint is not null ? RunDirectoryMode.Resume : parse.GetValue(overwrite) ? RunDirectoryMode.Overwrite : RunDirectoryMode.New;
            using var runDirectory = outDirectory is null ? null : ClaimRunDirectory(outDirectory, mode);
            if (runDirectory?.MovedAside is string aside) Console.WriteLine($"moved the earlier content of {outDirectory} to {aside}");
            using var compute = new ComputeContext(options.Threads);
            var trainer = new Trainer(options, compute, split, mnist.Test, outDirectory);
            if (checkpoint is not null)
            {
                trainer.Resume(checkpoint);
                if (trainer.Progress.EpochsCompleted >= options.Epochs)
                {
                    Console.WriteLine($"{checkpoint} has completed {trainer.Progress.EpochsCompleted} epoch(s); nothing to train (give --epochs N to train further)");
                    // A run stopped between its last checkpoint and its summary gets the summary now.
                    string summaryFile = Path.Combine(Path.GetDirectoryName(checkpoint)!, Trainer.SummaryFile);
                    if (!File.Exists(summaryFile) && trainer.Progress.EpochsCompleted == options.Epochs)
                    {
                        trainer.Run();
                        Console.WriteLine($"wrote {summaryFile}");
                    }
                    return 0;
                }
                Console.WriteLine($"resuming {checkpoint} after epoch {trainer.Progress.EpochsCompleted}");
            }
            Console.WriteLine($"{options.ModelOptions.Model}: {trainer.Model.ParameterCount:N0} parameters; train {split.Train.Count}, dev {split.Dev?.Count ?? 0}, test {mnist.Test.Count} images of {source.Directory}; batch {options.BatchSize}, {options.Threads} threads");
            var summary = trainer.Run(new ConsoleProgress());
            string dev = summary.DevAccuracy is double d ? $"{d:F4}" : "n/a";
            Console.WriteLine($"best epoch {summary.BestEpoch}: dev accuracy {dev}, test accuracy {summary.TestAccuracy:F4} (final {summary.FinalTestAccuracy:F4}), {summary.TrainSeconds:F1} s of training and evaluation");
            if (outDirectory is not null) Console.WriteLine($"wrote {Path.Combine(outDirectory, Trainer.SummaryFile)}");
            return 0;
        }));
        return command;

        // The options that define a run's results, each with how to read it from a configuration.
        static (Option Option, Func<TrainOptions, string> Value)[] Configuration(params (Option, Func<TrainOptions, object?>)[] options) =>
            options.Select(o => (o.Item1, (Func<TrainOptions, string>)(t => o.Item2(t) switch
            {
                null => "(none)",
                string[] list => string.Join(",", list),
                IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
                var v => v.ToString()!.ToLowerInvariant(),
            }))).ToArray();
    }

    /// <summary>Whether a network description puts meProp on any layer, inside residual blocks included.</summary>
    private static bool HasMeProp(IEnumerable<LayerSpec>? layers) =>
        layers?.Any(l => l.MeProp is not null || HasMeProp(l.Layers) || HasMeProp(l.Shortcut)) == true;

    /// <summary>The schedule of --topk-schedule, --dense-warmup and --dense-every; null when none is given (a fixed ratio).</summary>
    private static TopKSchedule? Schedule(string? text, int denseWarmup, int denseEvery) =>
        text is null && denseWarmup == 0 && denseEvery == 0 ? null
            : (text is null ? new TopKSchedule() : TopKSchedule.Parse(text)) with { DenseWarmup = denseWarmup, DenseEvery = denseEvery };

    /// <summary>A configuration's --topk-schedule as written on the command line.</summary>
    private static string? ScheduleText(TrainOptions options) => options.TopKSchedule switch
    {
        null => null,
        { Shape: ScheduleShape.Constant } => "constant",
        var s => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{s.Shape.ToString().ToLowerInvariant()}:{s.StartRatio}:{s.EndRatio}"),
    };

    /// <summary>The input normalisation the options ask for: computed on the training split, given, or none.</summary>
    private static InputNormalization? Normalization(ParseResult parse, Option<bool> normalize, Option<float[]?> mean, Option<float[]?> std, Dataset train)
    {
        float[]? givenMean = parse.GetValue(mean) is { Length: > 0 } m ? m : null, givenStd = parse.GetValue(std) is { Length: > 0 } s ? s : null;
        if ((givenMean is null) != (givenStd is null)) throw new ArgumentException("--mean and --std go together");
        if (givenMean is not null && parse.GetValue(normalize)) throw new ArgumentException("--normalize computes the mean and std; give either it or --mean and --std");
        if (givenMean is not null)
        {
            if (givenMean.Length != train.Channels || givenStd!.Length != train.Channels)
                throw new ArgumentException($"--mean and --std need one value per channel of the data ({train.Channels}), got {givenMean.Length} and {givenStd!.Length}");
            return new InputNormalization(givenMean, givenStd);
        }
        if (!parse.GetValue(normalize)) return null;
        var (computedMean, computedStd) = train.ChannelStatistics();
        if (computedStd.Any(v => !(v > 0))) throw new ArgumentException("--normalize: a channel of the training images is constant (std 0)");
        return new InputNormalization(computedMean, computedStd);
    }

    private static bool SameNormalization(InputNormalization? a, InputNormalization? b) =>
        a is null || b is null ? a is null && b is null : a.Mean.AsSpan().SequenceEqual(b.Mean) && a.Std.AsSpan().SequenceEqual(b.Std);

    private static string NormalizationText(InputNormalization? normalization) =>
        normalization is null ? "none" : $"mean {Floats(normalization.Mean)} std {Floats(normalization.Std)}";

    private static string Floats(float[] values) => string.Join(",", values.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));

    private static Option<float[]?> FloatList(string name, string description) => new(name)
    {
        Description = description,
        CustomParser = result =>
        {
            var values = new List<float>();
            foreach (string part in result.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)))
            {
                if (float.TryParse(part, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out float v) && float.IsFinite(v)) values.Add(v);
                else result.AddError($"{name}: '{part}' is not a number");
            }
            return values.ToArray();
        },
    };

    private static RunDirectory ClaimRunDirectory(string path, RunDirectoryMode mode)
    {
        try
        {
            return RunDirectory.Claim(path, mode);
        }
        catch (RunDirectoryInUseException e) when (mode == RunDirectoryMode.New)
        {
            throw new ArgumentException($"--out {e.Message}: continue it with --resume {path}, or start over with --overwrite (which moves it aside)");
        }
    }

    private static Option<int> PositiveInt(string name, string description, int defaultValue)
    {
        var option = new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Require(v => v >= 1, $"{name} must be >= 1");
        return option;
    }
}
