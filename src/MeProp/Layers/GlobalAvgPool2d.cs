using MeProp.Kernels;
using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// Global average pooling: x [N, C, H, W] -> y [N, C], y[n, c] = mean of x[n, c, :, :] (PyTorch's
/// nn.AdaptiveAvgPool2d(1) followed by flatten). Backward: dx[n, c, :, :] = dy[n, c] / (H·W).
/// </summary>
public sealed class GlobalAvgPool2d : ILayer
{
    private readonly ComputeContext _compute;
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    private int[] _inputShape = [];

    public GlobalAvgPool2d(string name, ComputeContext compute)
    {
        Name = name;
        _compute = compute;
    }

    public string Name { get; }
    public IReadOnlyList<Parameter> Parameters => [];
    public bool ComputeInputGradient { get; set; } = true;

    public int[] OutputShape(ReadOnlySpan<int> s)
    {
        if (s.Length != 4 || s[2] < 1 || s[3] < 1)
            throw new ArgumentException($"{Name}: expected input [N, C, H, W] with H, W >= 1, got [{string.Join(", ", s.ToArray())}]");
        return [s[0], s[1]];
    }

    public Tensor Forward(Tensor input, bool training)
    {
        var s = input.Shape;
        if (s.Length != 4 || s[2] < 1 || s[3] < 1) OutputShape(s); // throws with the shape
        _output.Reshape(s[0], s[1]);
        if (!input.SameShape(_inputShape)) _inputShape = input.ShapeArray();
        AvgPooling.GlobalForward(input.Span, _output.Span, s[0] * s[1], s[2] * s[3], _compute.Pool);
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!outputGradient.SameShape(_output.Shape))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output {_output.ShapeText}");
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(_inputShape);
        AvgPooling.GlobalBackward(outputGradient.Span, _inputGradient.Span, _inputShape[0] * _inputShape[1],
            _inputShape[2] * _inputShape[3], _compute.Pool);
        return _inputGradient;
    }
}
