using System.Diagnostics;
using MeProp.Layers;
using MeProp.Tensors;

namespace MeProp.Models;

/// <summary>
/// Layers applied in order. Backward runs them in reverse; the layers up to the first with parameters
/// are told not to compute dL/dx (nobody needs the gradient of the images). Keeps per-layer backward time so the cost of
/// each layer's backward can be reported.
/// </summary>
public sealed class Sequential
{
    private readonly ILayer[] _layers;
    private readonly long[] _backwardTicks;
    private readonly long[] _forwardTicks;
    /// <summary>The last batch of images seen flattened (<see cref="AsNetworkInput"/>), kept while its storage and size stay.</summary>
    private Tensor? _flatInput;

    public Sequential(IEnumerable<ILayer> layers)
    {
        _layers = layers.ToArray();
        if (_layers.Length == 0) throw new ArgumentException("a model needs at least one layer");
        var duplicate = AllLayers.GroupBy(l => l.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"layer name '{duplicate.Key}' is used twice");
        // Nobody needs dL/d(images): the layers up to and including the first one with parameters skip dx
        // (a flatten or a pooling in front of it would only pass on a gradient that is thrown away).
        foreach (var layer in _layers)
        {
            layer.ComputeInputGradient = false;
            if (layer.Parameters.Count > 0) break;
        }
        // A linear layer whose input's zeros get no use of their gradient (ReLU, then pooling or flatten)
        // computes dL/dx only at its input's non-zeros.
        bool zerosIgnored = false;
        foreach (var layer in _layers)
        {
            if (layer is Linear linear) linear.InputZerosNeedNoGradient = zerosIgnored;
            zerosIgnored = layer is IIgnoresGradientAtZeros passing && passing.IgnoresGradientAtZeroOutputs(zerosIgnored);
        }
        Parameters = _layers.SelectMany(l => l.Parameters).ToArray();
        _backwardTicks = new long[_layers.Length];
        _forwardTicks = new long[_layers.Length];
    }

    /// <summary>The description the model was built from (by <see cref="NetworkFactory"/>), or null for layers put together by hand.</summary>
    public NetworkSpec? Spec { get; init; }

    /// <summary>The top-level layers, in order.</summary>
    public IReadOnlyList<ILayer> Layers => _layers;

    /// <summary>Every layer depth-first, composite layers followed by their children: what per-layer code (checkpoint state, meProp, counters) walks.</summary>
    public IEnumerable<ILayer> AllLayers => _layers.SelectMany(Flatten);

    private static IEnumerable<ILayer> Flatten(ILayer layer) =>
        layer is ICompositeLayer composite ? composite.Children.SelectMany(Flatten).Prepend(layer) : [layer];

    /// <summary>All learnable parameters, in layer order.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The layer with this name, or an error listing the names there are.</summary>
    public ILayer Layer(string name) => AllLayers.FirstOrDefault(l => l.Name == name)
        ?? throw new ArgumentException($"no layer named '{name}'; layers are {string.Join(", ", AllLayers.Select(l => l.Name))}");

    /// <summary>The output shape for an input of the given shape (batch first), layer by layer.</summary>
    public int[] OutputShape(ReadOnlySpan<int> inputShape)
    {
        int[] shape = FirstLayerInputShape(inputShape);
        foreach (var layer in _layers) shape = layer.OutputShape(shape);
        return shape;
    }

    /// <summary>
    /// The shape the first layer is given for an input of <paramref name="inputShape"/> (batch first): images
    /// [N, C, H, W] become [N, features] for a network described with input [features] (see <see cref="Forward"/>);
    /// any other input is given as it is.
    /// </summary>
    public int[] FirstLayerInputShape(ReadOnlySpan<int> inputShape) =>
        ReadsImagesFlattened(inputShape, out int features) ? [inputShape[0], features] : inputShape.ToArray();

    /// <summary>
    /// Whether a batch of <paramref name="inputShape"/> is images that this network, described with input
    /// [<paramref name="features"/>], reads flattened; an error when their size per example is not the features.
    /// </summary>
    private bool ReadsImagesFlattened(ReadOnlySpan<int> inputShape, out int features)
    {
        features = 0;
        if (Spec?.Input is not [int described] || inputShape.Length <= 2) return false;
        if (Tensor.ElementCount(inputShape[1..]) != described)
            throw new ArgumentException($"the network's input is [{described}] per example, got a batch [{string.Join(", ", inputShape.ToArray())}]");
        features = described;
        return true;
    }

    /// <summary>
    /// Runs every layer on <paramref name="input"/>: [N, ...] as the first layer takes it. A network described
    /// with input [features] also takes images [N, C, H, W] with C·H·W = features, read flattened (CHW
    /// order) as a flatten layer in front would read them, so data loaders need not know the network.
    /// </summary>
    public Tensor Forward(Tensor input, bool training)
    {
        var x = AsNetworkInput(input);
        for (int i = 0; i < _layers.Length; i++)
        {
            long start = Stopwatch.GetTimestamp();
            x = _layers[i].Forward(x, training);
            _forwardTicks[i] += Stopwatch.GetTimestamp() - start;
        }
        return x;
    }

    private Tensor AsNetworkInput(Tensor input)
    {
        if (!ReadsImagesFlattened(input.Shape, out int features)) return input;
        int n = input.Dim(0);
        if (_flatInput is null || !_flatInput.SharesStorageWith(input) || _flatInput.Dim(0) != n) _flatInput = input.View(n, features);
        return _flatInput;
    }

    /// <summary>Back-propagates dL/d(output) through every layer, adding into the parameter gradients.</summary>
    public void Backward(Tensor outputGradient)
    {
        Tensor? dy = outputGradient;
        for (int i = _layers.Length - 1; i >= 0 && dy is not null; i--)
        {
            long start = Stopwatch.GetTimestamp();
            dy = _layers[i].Backward(dy);
            _backwardTicks[i] += Stopwatch.GetTimestamp() - start;
        }
    }

    /// <summary>Seconds spent in each layer's Backward since the last reset, by layer name.</summary>
    public Dictionary<string, double> BackwardSeconds() =>
        _layers.Select((l, i) => (l.Name, Seconds: _backwardTicks[i] / (double)Stopwatch.Frequency)).ToDictionary(x => x.Name, x => x.Seconds);

    /// <summary>Stopwatch ticks spent in layer <paramref name="index"/>'s Backward since the last reset (allocation-free).</summary>
    public long BackwardTicks(int index) => _backwardTicks[index];

    /// <summary>Stopwatch ticks spent in layer <paramref name="index"/>'s Forward since the last reset.</summary>
    public long ForwardTicks(int index) => _forwardTicks[index];

    public void ResetTimings()
    {
        Array.Clear(_backwardTicks);
        Array.Clear(_forwardTicks);
    }

    /// <summary>
    /// Sets <see cref="IMePropLayer.ExactSparsity"/> on every conv and linear layer: with Auto (what
    /// training uses by default) a forward also skips the zeros of sparse inputs, so an evaluation after
    /// training computes what the training's evaluations did.
    /// </summary>
    public void SetExactSparsity(ExactSparsity setting)
    {
        foreach (var layer in AllLayers.OfType<IMePropLayer>()) layer.ExactSparsity = setting;
    }

    /// <summary>Number of learnable scalars.</summary>
    public long ParameterCount => Parameters.Sum(p => (long)p.Value.Length);
}
