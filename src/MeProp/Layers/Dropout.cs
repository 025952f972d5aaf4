using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// Inverted dropout: in training each element is zeroed with probability p and the rest scaled by
/// 1/(1-p), so inference is the identity. Any shape. The mask comes from the layer's own seeded Rng
/// (saved in checkpoints through <see cref="Rng"/>).
/// </summary>
public sealed class Dropout : IIgnoresGradientAtZeros, IStatefulLayer
{
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    private readonly Tensor _mask = new(0);
    private bool _lastWasTraining;

    public Dropout(string name, float probability, Rng rng)
    {
        if (!(probability >= 0f && probability < 1f)) throw new ArgumentException($"{name}: dropout probability must be in [0, 1), got {probability}");
        Name = name;
        Probability = probability;
        Rng = rng;
    }

    public string Name { get; }
    public float Probability { get; }
    public Rng Rng { get; }
    public IReadOnlyList<Parameter> Parameters => [];
    public bool ComputeInputGradient { get; set; } = true;

    public int[] OutputShape(ReadOnlySpan<int> inputShape) => inputShape.ToArray();

    /// <summary>A zero output is a dropped value (dx = 0 whatever dy) or a zero input (dy passes to it).</summary>
    public bool IgnoresGradientAtZeroOutputs(bool inputZerosIgnored) => inputZerosIgnored;

    public Tensor Forward(Tensor input, bool training)
    {
        _lastWasTraining = training;
        _output.Reshape(input.Shape);
        if (!training || Probability == 0f)
        {
            input.Span.CopyTo(_output.Span);
            return _output;
        }
        _mask.Reshape(input.Shape);
        float scale = 1f / (1f - Probability);
        var x = input.Span; var y = _output.Span; var mask = _mask.Span;
        for (int i = 0; i < x.Length; i++)
        {
            mask[i] = Rng.NextDouble() < Probability ? 0f : scale;
            y[i] = x[i] * mask[i];
        }
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(outputGradient.Shape);
        if (!_lastWasTraining || Probability == 0f) outputGradient.Span.CopyTo(_inputGradient.Span);
        else System.Numerics.Tensors.TensorPrimitives.Multiply(outputGradient.Span, _mask.Span, _inputGradient.Span);
        return _inputGradient;
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() => [];

    public IEnumerable<(string Key, string Value)> StateMetadata() =>
        [(Name + ".rng", string.Join(",", Rng.GetState()))];

    public void RestoreMetadata(IReadOnlyDictionary<string, string> metadata)
    {
        if (!metadata.TryGetValue(Name + ".rng", out var text)) throw new ArgumentException($"checkpoint has no '{Name}.rng' state");
        Rng.SetState(text.Split(',').Select(ulong.Parse).ToArray());
    }
}
