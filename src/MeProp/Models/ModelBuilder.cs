using MeProp.Kernels;
using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Models;

/// <summary>What to build: the model name and its options, as given on the command line.</summary>
public sealed record ModelOptions
{
    /// <summary>"paper-cnn" or "mlp".</summary>
    public string Model { get; init; } = "paper-cnn";
    public ActivationKind Activation { get; init; } = ActivationKind.Relu;
    /// <summary>MLP only: width of each hidden layer.</summary>
    public int HiddenSize { get; init; } = 500;
    /// <summary>MLP only: number of hidden layers (2 gives fc1, fc2, fc3, the original meProp's 3-layer MLP).</summary>
    public int HiddenLayers { get; init; } = 2;
    /// <summary>Batch normalization after each hidden conv/linear layer, before its nonlinearity (as the meProp-CNN paper).</summary>
    public bool BatchNorm { get; init; }

    public static readonly string[] KnownModels = ["paper-cnn", "mlp"];
}

/// <summary>Builds the networks the papers train, with PyTorch-style layer names.</summary>
public static class ModelBuilder
{
    /// <summary>
    /// Builds the model for images [N, channels, height, width] with <paramref name="classes"/> outputs.
    /// Initial weights come from <paramref name="seed"/> alone.
    /// </summary>
    public static Sequential Build(ModelOptions options, int channels, int height, int width, int classes, ComputeContext compute, ulong seed)
    {
        var rng = Rng.ForStream(seed, 1);
        return options.Model switch
        {
            "paper-cnn" => PaperCnn(options, channels, height, width, classes, compute, rng),
            "mlp" => Mlp(options, channels * height * width, classes, compute, rng),
            _ => throw new ArgumentException($"unknown model '{options.Model}'; known models: {string.Join(", ", ModelOptions.KnownModels)}"),
        };
    }

    /// <summary>
    /// The meProp-CNN paper's network: conv 5x5x32 'same' -> act -> max-pool 2x2 -> conv 5x5x64 'same'
    /// -> act -> max-pool 2x2 -> flatten -> fc1 1024 -> act -> fc2 classes. With batch norm: bn1, bn2, bn3
    /// between conv1, conv2, fc1 and their nonlinearities; meProp's selection then acts on the gradient
    /// at the conv output, below the batch norm.
    /// </summary>
    public static Sequential PaperCnn(ModelOptions options, int channels, int height, int width, int classes, ComputeContext compute, Rng rng)
    {
        int pad = Conv2d.SamePadding(5);
        int h2 = height / 2 / 2, w2 = width / 2 / 2;
        if (h2 < 1 || w2 < 1) throw new ArgumentException($"paper-cnn needs images of at least 4x4, got {height}x{width}");
        var layers = new List<ILayer>();
        layers.Add(new Conv2d("conv1", channels, 32, 5, 1, pad, compute, rng));
        if (options.BatchNorm) layers.Add(new BatchNorm("bn1", 32, compute));
        layers.Add(new Activation("act1", options.Activation, compute));
        layers.Add(new MaxPool2d("pool1", 2, compute));
        layers.Add(new Conv2d("conv2", 32, 64, 5, 1, pad, compute, rng));
        if (options.BatchNorm) layers.Add(new BatchNorm("bn2", 64, compute));
        layers.Add(new Activation("act2", options.Activation, compute));
        layers.Add(new MaxPool2d("pool2", 2, compute));
        layers.Add(new Flatten("flatten"));
        layers.Add(new Linear("fc1", 64 * h2 * w2, 1024, compute, rng));
        if (options.BatchNorm) layers.Add(new BatchNorm("bn3", 1024, compute));
        layers.Add(new Activation("act3", options.Activation, compute));
        layers.Add(new Linear("fc2", 1024, classes, compute, rng));
        return new Sequential(layers);
    }

    /// <summary>Flatten -> (fc_i hidden -> act) x hiddenLayers -> fc_last classes.</summary>
    public static Sequential Mlp(ModelOptions options, int inputs, int classes, ComputeContext compute, Rng rng)
    {
        if (options.HiddenSize < 1 || options.HiddenLayers < 0) throw new ArgumentException("mlp: hidden size must be positive and hidden layers non-negative");
        var layers = new List<ILayer> { new Flatten("flatten") };
        int width = inputs;
        for (int i = 1; i <= options.HiddenLayers; i++)
        {
            layers.Add(new Linear($"fc{i}", width, options.HiddenSize, compute, rng));
            if (options.BatchNorm) layers.Add(new BatchNorm($"bn{i}", options.HiddenSize, compute));
            layers.Add(new Activation($"act{i}", options.Activation, compute));
            width = options.HiddenSize;
        }
        layers.Add(new Linear($"fc{options.HiddenLayers + 1}", width, classes, compute, rng));
        return new Sequential(layers);
    }
}
