// TrainCustomCnn: builds a small CNN with MeProp's fluent API, gives one layer meProp (top-k of its
// output gradient per feature map, on a running average), trains it on MNIST-layout IDX data and
// writes checkpoints that PredictFromCheckpoint and `meprop eval` read.
//
//   dotnet run -c Release -- [DATA_DIR] [--out DIR] [--epochs N] [--max-train N] [--dev-size N]
//       [--batch-size N] [--lr LR] [--meprop-layer NAME|none] [--topk RATIO] [--decay D]
//       [--threads N] [--seed N]
//
// DATA_DIR holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte (plain or .gz); by default the MNIST cache that `meprop data fetch` fills
// ($MEPROP_DATA, else ~/.cache/meprop/mnist). Any images of one size in that layout work.
using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Sparsity;
using MeProp.Training;
using TrainCustomCnn;

Options o;
try
{
    o = Options.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    Console.Error.WriteLine(Options.Usage);
    return 2;
}
if (o.Help)
{
    Console.WriteLine(Options.Usage);
    return 0;
}

try
{
    if (o.SyntheticDirectory is string synthetic)
    {
        // Not part of the example: a tiny learnable data set for CI, which has no MNIST.
        SyntheticIdx.Write(synthetic, o.SyntheticTrain, o.SyntheticTest, o.Seed);
        Console.WriteLine($"wrote {o.SyntheticTrain} training and {o.SyntheticTest} test images (28x28, 10 classes) to {synthetic}");
        return 0;
    }

    if (!MnistFiles.Names.All(n => File.Exists(Path.Combine(o.DataDirectory, n)) || File.Exists(Path.Combine(o.DataDirectory, n + ".gz"))))
        throw new ArgumentException($"{o.DataDirectory} does not hold the four IDX files ({string.Join(", ", MnistFiles.Names)}); " +
                                    "fetch MNIST with `meprop data fetch`, or give a directory that holds them");

    // The output directory is claimed first: a new run refuses one that holds an earlier run.
    using var run = RunDirectory.Claim(o.OutDirectory, RunDirectoryMode.New);

    // Data: the first --dev-size training images are the dev split, then at most --max-train for training.
    var data = MnistFiles.Load(o.DataDirectory);
    var split = DatasetSplit.Create(data.Training, o.DevSize, o.MaxTrain);
    var train = split.Train;
    Console.WriteLine($"data: {train.Count} training, {split.Dev?.Count ?? 0} dev, {data.Test.Count} test images " +
                      $"[{train.Channels}, {train.Height}, {train.Width}], {train.Classes} classes, from {o.DataDirectory}");

    using var compute = new ComputeContext(o.Threads);

    // The network, layer by layer, with PyTorch's argument names; shapes are checked in Build.
    var model = new NetworkBuilder(train.Channels, train.Height, train.Width)
        .Conv2d(16, kernelSize: 5, padding: NetworkBuilder.Same, name: "conv1").BatchNorm().ReLU().MaxPool2d(2)
        .Conv2d(32, kernelSize: 5, padding: NetworkBuilder.Same, name: "conv2").BatchNorm().ReLU().MaxPool2d(2)
        .Flatten()
        .Linear(128, name: "fc1").ReLU()
        .Linear(train.Classes, name: "fc2")
        .Build(train.Classes, compute, o.Seed);

    // meProp on the chosen layer: its backward keeps the top --topk of dL/dy per feature map (per example
    // for a linear layer), chosen on a running average of |dL/dy| with --decay; every other layer stays dense.
    if (o.MePropLayer is string layerName)
    {
        var layer = model.Layer(layerName) as IMePropLayer
            ?? throw new ArgumentException($"--meprop-layer: {layerName} is not a convolution or linear layer");
        bool convolutional = layer is Conv2d;
        var mePropOptions = new MePropOptions
        {
            Ratio = o.TopK,
            Decay = o.Decay,
            Selection = convolutional ? SelectionPolicy.PerChannel : SelectionPolicy.PerExample,
        };
        layer.Sparsifier = new GradientSparsifier(layerName, mePropOptions, convolutional, o.Seed);
        Console.WriteLine($"meProp on {layerName}: top {Percent(o.TopK)} {(convolutional ? "per feature map" : "per example")}, decay {o.Decay}");
    }
    else Console.WriteLine("meProp off: every layer back-propagates densely");
    Console.Write(new ModelSummary(model, [train.Channels, train.Height, train.Width]));

    // Train: per epoch, the training split shuffled, then dev and test accuracy; checkpoints in --out.
    var optimizer = new Adam(model.Parameters, compute.Pool, o.LearningRate);
    var trainOptions = new TrainOptions
    {
        Epochs = o.Epochs,
        BatchSize = o.BatchSize,
        Seed = o.Seed,
        Threads = o.Threads,
        DevSize = o.DevSize,
        MaxTrain = o.MaxTrain,
        // Recorded with the run, so that `meprop eval` and `meprop train --resume` read these images again.
        Data = DataSource.Of(o.DataDirectory, data),
    };
    var trainer = new Trainer(model, optimizer, trainOptions, compute, split, data.Test, run.Path);
    var summary = trainer.Run(new EpochPrinter());

    Console.WriteLine($"best epoch {summary.BestEpoch}: dev accuracy {Format(summary.DevAccuracy)}, test accuracy {summary.TestAccuracy:F4} " +
                      $"({summary.TrainSeconds:F1} s of training and evaluation)");
    Console.WriteLine($"checkpoints: {Path.Combine(run.Path, Trainer.BestCheckpoint)} (best dev epoch), " +
                      $"{Path.Combine(run.Path, Trainer.LastCheckpoint)} (last epoch, with the optimizer state)");
    return 0;
}
catch (Exception e) when (e is ArgumentException or DataFormatException or IOException or UnauthorizedAccessException or InvalidOperationException)
{
    // Bad options, unreadable or malformed files, an output directory that holds an earlier run.
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}

static string Format(double? accuracy) => accuracy is double a ? a.ToString("F4") : "n/a (no dev split)";

static string Percent(double fraction) => $"{fraction * 100:0.##}%";

/// <summary>One line per epoch.</summary>
sealed class EpochPrinter : ITrainingObserver
{
    public void EpochStarted(int epoch, int epochs, int steps) => Console.WriteLine($"epoch {epoch}/{epochs}: {steps} steps");

    public void StepCompleted(int step, double meanLoss) { }

    public void EpochCompleted(EpochMetrics m)
    {
        string dev = m.DevAccuracy is double d ? $"dev {d:F4}, " : "";
        string kept = string.Join(", ", m.KeptFraction.Select(k => $"{k.Key} kept {k.Value * 100:0.##}% of dL/dy"));
        Console.WriteLine($"epoch {m.Epoch}: train loss {m.TrainLoss:F4}, train {m.TrainAccuracy:F4}, {dev}test {m.TestAccuracy:F4}, " +
                          $"{m.EpochSeconds:F1} s{(kept.Length > 0 ? "; " + kept : "")}");
        foreach (string warning in m.Warnings ?? []) Console.WriteLine($"warning: {warning}");
    }
}
