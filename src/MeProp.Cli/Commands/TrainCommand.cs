using System.CommandLine;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Threading;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>`meprop train`: trains a model under the paper's protocol, optionally resuming.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Network: paper-cnn or mlp", DefaultValueFactory = _ => "paper-cnn" };
        model.AcceptOnlyFromAmong(ModelOptions.KnownModels);
        var activation = CommonOptions.Activation();
        var hiddenSize = PositiveInt("--hidden-size", "MLP hidden width", 500);
        var hiddenLayers = new Option<int>("--hidden-layers") { Description = "MLP hidden layers", DefaultValueFactory = _ => 2 };
        hiddenLayers.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--hidden-layers must be >= 0"); });
        var epochs = new Option<int>("--epochs") { Description = "Epochs to train", DefaultValueFactory = _ => 1 };
        epochs.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--epochs must be >= 0"); });
        var batch = PositiveInt("--batch-size", "Mini-batch size (the paper uses 10)", 10);
        var lr = new Option<float>("--lr") { Description = "Learning rate", DefaultValueFactory = _ => 1e-3f };
        lr.Validators.Add(r => { float v = r.GetValueOrDefault<float>(); if (!(v > 0) || float.IsInfinity(v)) r.AddError("--lr must be a positive number"); });
        var optimizer = new Option<string>("--optimizer") { Description = "adam or sgd (with momentum)", DefaultValueFactory = _ => "adam" };
        optimizer.AcceptOnlyFromAmong("adam", "sgd");
        var momentum = new Option<float>("--momentum") { Description = "SGD momentum", DefaultValueFactory = _ => 0.9f };
        momentum.Validators.Add(r => { float v = r.GetValueOrDefault<float>(); if (!(v >= 0 && v < 1)) r.AddError("--momentum must be in [0, 1)"); });
        var seed = new Option<ulong>("--seed") { Description = "Seed of initialisation and shuffling", DefaultValueFactory = _ => 1UL };
        var threads = CommonOptions.Threads();
        var data = CommonOptions.DataDirectory();
        var devSize = new Option<int>("--dev-size") { Description = "Training images held out as the dev split (the first N)", DefaultValueFactory = _ => 5000 };
        devSize.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--dev-size must be >= 0"); });
        var maxTrain = new Option<int?>("--max-train") { Description = "Use only the first N training images (after the dev split), for quick runs" };
        maxTrain.Validators.Add(r => { if (r.GetValueOrDefault<int?>() is < 1) r.AddError("--max-train must be >= 1"); });
        var output = new Option<string?>("--out") { Description = "Directory for metrics.jsonl, summary.json and checkpoints" };
        var resume = new Option<string?>("--resume") { Description = "Continue the run in this directory from its last.safetensors (its configuration is used; --epochs may extend it)" };

        var noFusedUpdate = new Option<bool>("--no-fused-update") { Description = "With Adam, update the linear layers in the optimizer's own pass instead of during their backward (same results, slower)" };
        var batchNorm = new Option<bool>("--batch-norm") { Description = "Batch normalization after conv1, conv2 and fc1 (before the nonlinearity)" };
        var mePropOptions = new MePropCliOptions();

        var command = new Command("train", "Train a model on MNIST (or any directory of IDX files) and report test accuracy at the best dev epoch")
        {
            model, activation, hiddenSize, hiddenLayers, batchNorm, epochs, batch, lr, optimizer, momentum, seed, threads, data, devSize, maxTrain, output, resume, noFusedUpdate,
        };
        mePropOptions.AddTo(command);
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            string? resumeDirectory = parse.GetValue(resume);
            string? outDirectory = parse.GetValue(output);
            TrainOptions options;
            string? checkpoint = null;
            if (resumeDirectory is not null)
            {
                if (outDirectory is not null && Path.GetFullPath(outDirectory) != Path.GetFullPath(resumeDirectory))
                    throw new ArgumentException("--out and --resume name different directories; a resumed run writes into its own directory");
                checkpoint = Path.Combine(resumeDirectory, Trainer.LastCheckpoint);
                if (!File.Exists(checkpoint)) throw new ArgumentException($"--resume: {checkpoint} does not exist");
                options = Checkpoint.ReadOptions(checkpoint);
                if (parse.GetResult(epochs) is { Implicit: false }) options = options with { Epochs = parse.GetValue(epochs) };
                if (parse.GetResult(threads) is { Implicit: false }) options = options with { Threads = parse.GetValue(threads) };
                if (parse.GetValue(noFusedUpdate)) options = options with { FusedUpdate = false };
                outDirectory = resumeDirectory;
            }
            else
            {
                options = new TrainOptions
                {
                    ModelOptions = new ModelOptions
                    {
                        Model = parse.GetValue(model)!,
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
                };
                options = mePropOptions.Apply(parse, options);
            }
            options.Validate();
            // Build the model once on MNIST's geometry so that bad layer names fail before any data is read.
            using (var probe = new ComputeContext(1)) Trainer.BuildModel(options, 1, 28, 28, probe);
            string dataDirectory = CommonOptions.ResolveData(parse.GetValue(data));
            var mnist = MnistFiles.Load(dataDirectory);
            var split = DatasetSplit.Create(mnist.Training, options.DevSize, options.MaxTrain);
            using var compute = new ComputeContext(options.Threads);
            var trainer = new Trainer(options, compute, split, mnist.Test, outDirectory);
            if (checkpoint is not null)
            {
                trainer.Resume(checkpoint);
                Console.WriteLine($"resuming {checkpoint} after epoch {trainer.Progress.EpochsCompleted}");
            }
            Console.WriteLine($"{options.ModelOptions.Model}: {trainer.Model.ParameterCount:N0} parameters; train {split.Train.Count}, dev {split.Dev?.Count ?? 0}, test {mnist.Test.Count} images; batch {options.BatchSize}, {options.Threads} threads");
            var summary = trainer.Run(new ConsoleProgress());
            string dev = summary.DevAccuracy is double d ? $"{d:F4}" : "n/a";
            Console.WriteLine($"best epoch {summary.BestEpoch}: dev accuracy {dev}, test accuracy {summary.TestAccuracy:F4} (final {summary.FinalTestAccuracy:F4}), {summary.TrainSeconds:F1} s");
            if (outDirectory is not null) Console.WriteLine($"wrote {Path.Combine(outDirectory, Trainer.SummaryFile)}");
            return 0;
        }));
        return command;
    }

    private static Option<int> PositiveInt(string name, string description, int defaultValue)
    {
        var option = new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError($"{name} must be >= 1"); });
        return option;
    }
}
