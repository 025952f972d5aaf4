using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>x [N, d1, d2, ...] -> y [N, d1*d2*...] in row-major (C, H, W) order, as PyTorch; no copy.</summary>
public sealed class Flatten(string name) : IIgnoresGradientAtZeros
{
    private Tensor? _output;
    private Tensor? _inputGradient;
    private int[] _inputShape = [];

    public string Name { get; } = name;
    public IReadOnlyList<Parameter> Parameters => [];
    public bool ComputeInputGradient { get; set; } = true;

    /// <summary>Each value keeps its place: a zero output is a zero input.</summary>
    public bool IgnoresGradientAtZeroOutputs(bool inputZerosIgnored) => inputZerosIgnored;

    public int[] OutputShape(ReadOnlySpan<int> s)
    {
        if (s.Length < 2) throw new ArgumentException($"{Name}: input needs a batch dimension and at least one more");
        return [s[0], Tensor.ElementCount(s[1..])];
    }

    public Tensor Forward(Tensor input, bool training)
    {
        var s = input.Shape;
        if (s.Length < 2) OutputShape(s); // throws
        if (!input.SameShape(_inputShape)) _inputShape = input.ShapeArray();
        int features = Tensor.ElementCount(s[1..]);
        _output = _output is not null && _output.SharesStorageWith(input)
            ? _output.Reshape(s[0], features)
            : input.View(s[0], features);
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!ComputeInputGradient) return null;
        _inputGradient = _inputGradient is not null && _inputGradient.SharesStorageWith(outputGradient)
            ? _inputGradient.Reshape(_inputShape)
            : outputGradient.View(_inputShape);
        return _inputGradient;
    }
}
