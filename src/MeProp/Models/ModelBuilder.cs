using MeProp.Layers;

namespace MeProp.Models;

/// <summary>What to build: a built-in network by name and its options, or a <see cref="NetworkSpec"/>.</summary>
public sealed record ModelOptions
{
    /// <summary>"paper-cnn", "mlp", or, with <see cref="Network"/>, a label for the described network (its file name).</summary>
    public string Model { get; init; } = "paper-cnn";
    /// <summary>A network described as data; when set, it is what is built and the options below do not apply.</summary>
    public NetworkSpec? Network { get; init; }
    public ActivationKind Activation { get; init; } = ActivationKind.Relu;
    /// <summary>MLP only: width of each hidden layer.</summary>
    public int HiddenSize { get; init; } = 500;
    /// <summary>MLP only: number of hidden layers (2 gives fc1, fc2, fc3, the original meProp's 3-layer MLP).</summary>
    public int HiddenLayers { get; init; } = 2;
    /// <summary>Batch normalization after each hidden conv/linear layer, before its nonlinearity (as the meProp-CNN paper).</summary>
    public bool BatchNorm { get; init; }
    /// <summary>Per-channel input normalisation put in front of the network (a "normalize" layer), or null.</summary>
    public InputNormalization? Normalization { get; init; }
    /// <summary>The data's class names in label order, kept so that predictions can be named; null when unknown.</summary>
    public string[]? ClassNames { get; init; }

    /// <summary>The built-in networks.</summary>
    public static readonly string[] KnownModels = ["paper-cnn", "mlp"];
}

/// <summary>Per-channel mean and standard deviation of the inputs: the model computes (x - mean) / std first.</summary>
public sealed record InputNormalization(float[] Mean, float[] Std);

/// <summary>The built-in networks of the papers, as <see cref="NetworkSpec"/>s with PyTorch-style layer names.</summary>
public static class ModelBuilder
{
    /// <summary>
    /// Builds the model for images [N, channels, height, width] with <paramref name="classes"/> outputs.
    /// Initial weights come from <paramref name="seed"/> alone.
    /// </summary>
    public static Sequential Build(ModelOptions options, int channels, int height, int width, int classes, ComputeContext compute, ulong seed) =>
        NetworkFactory.Build(Spec(options, channels, height, width, classes), compute, seed);

    /// <summary>The network options describe, checked against the data's shape and classes.</summary>
    public static NetworkSpec Spec(ModelOptions options, int channels, int height, int width, int classes)
    {
        var spec = NetworkWithoutNormalization(options, channels, height, width, classes);
        if (options.Normalization is not { } norm) return spec;
        // The normalize layer works per channel of images; a network that takes flat features has no channels,
        // and the layer's own error would name a 'normalize' layer the user never wrote.
        if (spec.Input is not { Length: 3 })
            throw new ModelSpecException($"{options.Model}: --normalize (or --mean and --std) needs image input [C, H, W]; the network's input is [{string.Join(", ", spec.Input)}] features");
        var normalize = new LayerSpec { Type = "normalize", Mean = norm.Mean, Std = norm.Std };
        return spec with { Layers = [normalize, .. spec.Layers] };
    }

    private static NetworkSpec NetworkWithoutNormalization(ModelOptions options, int channels, int height, int width, int classes)
    {
        if (options.Network is { } network)
        {
            // A network file may lack its input or layers; say so before reading them.
            NetworkFactory.CheckInputClassesAndLayers(network, $"{options.Model}: ");
            int[] data = network.Input.Length == 1 ? [channels * height * width] : [channels, height, width];
            if (!network.Input.AsSpan().SequenceEqual(data))
                throw new ModelSpecException($"{options.Model}: the network's input is [{string.Join(", ", network.Input)}] but the data's images are [{channels}, {height}, {width}]");
            if (network.Classes != classes)
                throw new ModelSpecException($"{options.Model}: the network has {network.Classes} classes but the data has {classes}");
            return network;
        }
        return options.Model switch
        {
            "paper-cnn" => PaperCnn(options, channels, height, width, classes),
            "mlp" => Mlp(options, channels, height, width, classes),
            _ => throw new ArgumentException($"unknown model '{options.Model}'; built-in models: {string.Join(", ", ModelOptions.KnownModels)}, or give a network description"),
        };
    }

    /// <summary>
    /// The meProp-CNN paper's network: conv 5x5x32 'same' -> act -> max-pool 2x2 -> conv 5x5x64 'same'
    /// -> act -> max-pool 2x2 -> flatten -> fc1 1024 -> act -> fc2 classes. With batch norm: bn1, bn2, bn3
    /// between conv1, conv2, fc1 and their nonlinearities; meProp's selection then acts on the gradient
    /// at the conv output, below the batch norm.
    /// </summary>
    public static NetworkSpec PaperCnn(ModelOptions options, int channels, int height, int width, int classes)
    {
        var builder = new NetworkBuilder(channels, height, width);
        foreach (int outChannels in new[] { 32, 64 })
        {
            builder.Conv2d(outChannels, 5, padding: NetworkBuilder.Same);
            if (options.BatchNorm) builder.BatchNorm();
            builder.Activation(options.Activation).MaxPool2d(2);
        }
        builder.Flatten().Linear(1024);
        if (options.BatchNorm) builder.BatchNorm();
        return builder.Activation(options.Activation).Linear(classes).Spec(classes);
    }

    /// <summary>Flatten -> (fc_i hidden -> [bn_i] -> act) x hiddenLayers -> fc_last classes.</summary>
    public static NetworkSpec Mlp(ModelOptions options, int channels, int height, int width, int classes)
    {
        if (options.HiddenSize < 1 || options.HiddenLayers < 0) throw new ArgumentException("mlp: hidden size must be positive and hidden layers non-negative");
        var builder = new NetworkBuilder(channels, height, width).Flatten();
        for (int i = 1; i <= options.HiddenLayers; i++)
        {
            builder.Linear(options.HiddenSize);
            if (options.BatchNorm) builder.BatchNorm();
            builder.Activation(options.Activation);
        }
        return builder.Linear(classes).Spec(classes);
    }
}
