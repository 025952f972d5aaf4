using System.Text.Json;
using MeProp.Layers;

namespace MeProp.Models;

/// <summary>
/// A fluent way to write a <see cref="NetworkSpec"/> in C#, with PyTorch's argument names:
/// <code>
/// var model = new NetworkBuilder(channels: 1, height: 28, width: 28)
///     .Conv2d(32, kernelSize: 5, padding: NetworkBuilder.Same).ReLU().MaxPool2d(2)
///     .Flatten().Linear(128).ReLU().Linear(10)
///     .Build(classes: 10, compute, seed: 1);
/// </code>
/// Layers are named as in a network file (conv1, fc1, ...) unless given a name. Shapes are checked when
/// the spec is built into layers (<see cref="Build"/>), with the layer's name in the error.
/// </summary>
public sealed class NetworkBuilder
{
    /// <summary>Padding that keeps H x W at stride 1 (odd kernels).</summary>
    public const int Same = -1;

    private readonly int[] _input;
    private readonly List<LayerSpec> _layers = [];

    /// <summary>A network for images [channels, height, width].</summary>
    public NetworkBuilder(int channels, int height, int width) => _input = [channels, height, width];

    private NetworkBuilder() => _input = [];

    public NetworkBuilder Conv2d(int outChannels, int kernelSize, int stride = 1, int padding = 0, string? name = null) =>
        Add(new LayerSpec
        {
            Type = "conv2d", Name = name, OutChannels = outChannels, KernelSize = kernelSize, Stride = stride,
            Padding = padding == Same ? JsonSerializer.SerializeToElement("same") : JsonSerializer.SerializeToElement(padding),
        });

    public NetworkBuilder Linear(int outFeatures, string? name = null) => Add(new LayerSpec { Type = "linear", Name = name, OutFeatures = outFeatures });
    public NetworkBuilder BatchNorm(string? name = null) => Add(new LayerSpec { Type = "batchnorm", Name = name });
    public NetworkBuilder ReLU(string? name = null) => Activation(ActivationKind.Relu, name);
    public NetworkBuilder Sigmoid(string? name = null) => Activation(ActivationKind.Sigmoid, name);
    public NetworkBuilder Tanh(string? name = null) => Activation(ActivationKind.Tanh, name);

    public NetworkBuilder Activation(ActivationKind kind, string? name = null) =>
        Add(new LayerSpec { Type = kind.ToString().ToLowerInvariant(), Name = name });

    /// <summary>Max-pooling; <paramref name="stride"/> defaults to the kernel size, as PyTorch's.</summary>
    public NetworkBuilder MaxPool2d(int kernelSize, int? stride = null, string? name = null) =>
        Add(new LayerSpec { Type = "maxpool", Name = name, KernelSize = kernelSize, Stride = stride });

    /// <summary>Average pooling; <paramref name="stride"/> defaults to the kernel size, as PyTorch's.</summary>
    public NetworkBuilder AvgPool2d(int kernelSize, int? stride = null, string? name = null) =>
        Add(new LayerSpec { Type = "avgpool", Name = name, KernelSize = kernelSize, Stride = stride });

    public NetworkBuilder GlobalAvgPool2d(string? name = null) => Add(new LayerSpec { Type = "globalavgpool", Name = name });
    public NetworkBuilder Dropout(double p = 0.5, string? name = null) => Add(new LayerSpec { Type = "dropout", Name = name, P = p });
    /// <summary>y = (x - mean[c]) / std[c] per channel: put first, so that the model takes raw pixel values in [0, 1].</summary>
    public NetworkBuilder Normalize(float[] mean, float[] std, string? name = null) => Add(new LayerSpec { Type = "normalize", Name = name, Mean = mean, Std = std });

    public NetworkBuilder Flatten(string? name = null) => Add(new LayerSpec { Type = "flatten", Name = name });

    /// <summary>y = body(x) + shortcut(x); the shortcut is the identity when <paramref name="shortcut"/> is null.</summary>
    public NetworkBuilder Residual(Action<NetworkBuilder> body, Action<NetworkBuilder>? shortcut = null, string? name = null)
    {
        var bodyBuilder = new NetworkBuilder();
        body(bodyBuilder);
        NetworkBuilder? shortcutBuilder = null;
        if (shortcut is not null)
        {
            shortcutBuilder = new NetworkBuilder();
            shortcut(shortcutBuilder);
        }
        return Add(new LayerSpec { Type = "residual", Name = name, Layers = bodyBuilder._layers, Shortcut = shortcutBuilder?._layers });
    }

    /// <summary>The description so far, for <paramref name="classes"/> outputs (save it with <see cref="NetworkSpec.ToJson"/>).</summary>
    public NetworkSpec Spec(int classes) => new() { Input = _input, Classes = classes, Layers = [.. _layers] };

    /// <summary>Builds the layers; throws <see cref="ModelSpecException"/> naming the layer whose shapes do not fit.</summary>
    public Sequential Build(int classes, ComputeContext compute, ulong seed) => NetworkFactory.Build(Spec(classes), compute, seed);

    private NetworkBuilder Add(LayerSpec layer)
    {
        _layers.Add(layer);
        return this;
    }
}
