using MeProp.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace MeProp.Layers;

/// <summary>
/// Per-channel input normalisation inside the model, so that training, evaluation, prediction and an
/// exported model all see the same: x [N, C, H, W] (or [N, C]) -> y = (x - mean[c]) * (1 / std[c]), same shape
/// (multiplied by the reciprocal: within a rounding of torchvision's division). Backward: dx = dy * (1 / std[c]). Network
/// descriptions put it on images [C, H, W] only. No parameters; mean and std are part of the network's description.
/// </summary>
public sealed class Normalize : ILayer
{
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    private readonly float[] _mean, _std, _inverseStd;

    public Normalize(string name, IReadOnlyList<float> mean, IReadOnlyList<float> std)
    {
        if (mean.Count == 0 || mean.Count != std.Count)
            throw new ArgumentException($"{name}: mean and std need one value per channel, got {mean.Count} and {std.Count}");
        if (std.Any(s => !(s > 0) || !float.IsFinite(s)))
            throw new ArgumentException($"{name}: every std must be a positive finite number, got [{string.Join(", ", std)}]");
        if (mean.Any(m => !float.IsFinite(m)))
            throw new ArgumentException($"{name}: every mean must be finite, got [{string.Join(", ", mean)}]");
        Name = name;
        _mean = mean.ToArray();
        _std = std.ToArray();
        _inverseStd = _std.Select(s => 1f / s).ToArray();
    }

    public string Name { get; }
    /// <summary>Per channel, fixed at construction (read-only: the forward keeps 1/std).</summary>
    public ReadOnlySpan<float> Mean => _mean;
    /// <summary>Per channel, fixed at construction.</summary>
    public ReadOnlySpan<float> Std => _std;
    public IReadOnlyList<Parameter> Parameters => [];
    public bool ComputeInputGradient { get; set; } = true;

    public int[] OutputShape(ReadOnlySpan<int> inputShape)
    {
        if (inputShape.Length < 2 || inputShape[1] != Mean.Length)
            throw new ArgumentException($"{Name}: expected input [N, {Mean.Length}, ...] ({Mean.Length} channels), got [{string.Join(", ", inputShape.ToArray())}]");
        return inputShape.ToArray();
    }

    public Tensor Forward(Tensor input, bool training)
    {
        if (input.Rank < 2 || input.Dim(1) != Mean.Length) OutputShape(input.Shape); // throws with the shapes
        _output.Reshape(input.Shape);
        Apply(input.Span, _output.Span, input.Dim(0), subtractMean: true);
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(outputGradient.Shape);
        Apply(outputGradient.Span, _inputGradient.Span, outputGradient.Dim(0), subtractMean: false);
        return _inputGradient;
    }

    /// <summary>to = (from - mean[c]) * (1 / std[c]) plane by plane, or from * (1 / std[c]) without the mean (the backward).</summary>
    private void Apply(ReadOnlySpan<float> from, Span<float> to, int n, bool subtractMean)
    {
        int channels = Mean.Length, plane = from.Length / (n * channels);
        for (int image = 0; image < n; image++)
            for (int c = 0; c < channels; c++)
            {
                int at = (image * channels + c) * plane;
                var source = from.Slice(at, plane);
                var target = to.Slice(at, plane);
                if (subtractMean)
                {
                    TensorPrimitives.Subtract(source, _mean[c], target);
                    TensorPrimitives.Multiply(target, _inverseStd[c], target);
                }
                else TensorPrimitives.Multiply(source, _inverseStd[c], target);
            }
    }
}
