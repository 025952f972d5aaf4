// PredictFromCheckpoint: loads a checkpoint written by TrainCustomCnn or by `meprop train`, rebuilds the
// network from the description stored in the checkpoint itself (a network written as data, or a built-in
// model's name and options), loads its weights and prints the most likely classes, with their
// probabilities, for the first few test images.
//
//   dotnet run -c Release -- CHECKPOINT [DATA_DIR] [--count N] [--top K] [--threads N]
//
// CHECKPOINT is a .safetensors file or a run directory (its best.safetensors). DATA_DIR holds
// t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (plain or .gz); by default the MNIST cache
// ($MEPROP_DATA, else ~/.cache/meprop/mnist).
using System.Globalization;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;
using MeProp.Training;

const string Usage =
    "usage: PredictFromCheckpoint CHECKPOINT [DATA_DIR] [--count N] [--top K] [--threads N]\n" +
    "  CHECKPOINT  a .safetensors file written by training, or a run directory (its best.safetensors)\n" +
    "  DATA_DIR    holds the MNIST-layout test files (default: $MEPROP_DATA or ~/.cache/meprop/mnist)\n" +
    "  --count     test images to classify (default 5); --top: classes shown per image (default 3)";

string? checkpoint = null, dataDirectory = null;
int count = 5, top = 3, threads = Environment.ProcessorCount;
try
{
    for (int i = 0; i < args.Length; i++)
    {
        string arg = args[i];
        int Value() => i + 1 < args.Length && int.TryParse(args[++i], NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v >= 1
            ? v : throw new ArgumentException($"{arg} needs a positive integer");
        switch (arg)
        {
            case "-h" or "--help": Console.WriteLine(Usage); return 0;
            case "--count": count = Value(); break;
            case "--top": top = Value(); break;
            case "--threads": threads = Value(); break;
            default:
                if (arg.StartsWith('-') || dataDirectory is not null) throw new ArgumentException($"unexpected argument '{arg}'");
                if (checkpoint is null) checkpoint = arg;
                else dataDirectory = arg;
                break;
        }
    }
    if (checkpoint is null) throw new ArgumentException("give a checkpoint file or run directory");
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    Console.Error.WriteLine(Usage);
    return 2;
}

try
{
    string path = Directory.Exists(checkpoint) ? Path.Combine(checkpoint, Trainer.BestCheckpoint) : checkpoint;
    if (!File.Exists(path)) throw new FileNotFoundException($"{path} does not exist");

    // The configuration training stored in the checkpoint says which network it is.
    var options = Checkpoint.ReadOptions(path);
    var network = options.ModelOptions.Network;

    // Only the test files are read; the classes are the network's (or MNIST's ten for a built-in model).
    string data = dataDirectory ?? MnistFetcher.DefaultCacheDirectory();
    var test = Dataset.LoadIdx(MnistFiles.Find(data, MnistFiles.TestImages), MnistFiles.Find(data, MnistFiles.TestLabels),
        network?.Classes ?? MnistFiles.Classes);
    count = Math.Min(count, test.Count);

    // Rebuild the same layers (shapes checked against the data), then load the trained weights into them.
    using var compute = new ComputeContext(threads);
    var model = ModelBuilder.Build(options.ModelOptions, test.Channels, test.Height, test.Width, test.Classes, compute, options.Seed);
    Checkpoint.Load(path, model, optimizer: null);
    Console.WriteLine($"{path}: {(network is not null ? "the network described in the checkpoint" : $"the built-in model '{options.ModelOptions.Model}'")}, " +
                      $"layers {string.Join(" ", model.Layers.Select(l => l.Name))}, {model.ParameterCount:N0} parameters, {test.Classes} classes");

    // The first `count` test images as one batch [count, C, H, W]; probabilities come back [count * classes].
    var images = new Tensor(count, test.Channels, test.Height, test.Width);
    test.Images.Span[..images.Length].CopyTo(images.Span);
    float[] probabilities = Prediction.Predict(model, images);

    int classes = test.Classes, correct = 0;
    for (int n = 0; n < count; n++)
    {
        var row = probabilities.AsSpan(n * classes, classes).ToArray();
        var best = Enumerable.Range(0, classes).OrderByDescending(c => row[c]).Take(top).ToArray();
        int label = test.Labels.Span[n];
        if (best[0] == label) correct++;
        Console.WriteLine($"test image {n}: label {label}, predicted " +
                          string.Join(", ", best.Select(c => $"{c} ({row[c] * 100:0.0}%)")));
    }
    Console.WriteLine($"{correct} of {count} images classified correctly");
    return 0;
}
catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException or DataFormatException or CheckpointFormatException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
