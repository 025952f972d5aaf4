using MeProp.Kernels;
using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// Max pooling, KxK windows, stride S (default K), no padding, floor mode.
/// x [N, C, H, W] -> y [N, C, (H-K)/S+1, (W-K)/S+1]; Backward routes dy to each window's maximum.
/// </summary>
public sealed class MaxPool2d : IIgnoresGradientAtZeros
{
    private readonly ComputeContext _compute;
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    private int[] _argmax = [];
    private int[] _inputShape = [];

    public MaxPool2d(string name, int kernelSize, ComputeContext compute, int stride = 0)
    {
        if (kernelSize < 1 || stride < 0) throw new ArgumentException($"{name}: kernel size must be positive and stride positive (or 0 for the kernel size), got {kernelSize} and {stride}");
        Name = name;
        KernelSize = kernelSize;
        Stride = stride == 0 ? kernelSize : stride;
        _compute = compute;
    }

    public string Name { get; }
    public int KernelSize { get; }
    public int Stride { get; }
    public IReadOnlyList<Parameter> Parameters => [];
    public bool ComputeInputGradient { get; set; } = true;

    public int[] OutputShape(ReadOnlySpan<int> s) => PoolingGeometry.OutputShape(Name, KernelSize, Stride, s);

    /// <summary>A zero output's dy goes to a window input that is zero too (its maximum).</summary>
    public bool IgnoresGradientAtZeroOutputs(bool inputZerosIgnored) => inputZerosIgnored;

    public Tensor Forward(Tensor input, bool training)
    {
        var s = input.Shape;
        if (s.Length != 4 || s[2] < KernelSize || s[3] < KernelSize) OutputShape(s); // throws with the shapes
        if (!input.SameShape(_inputShape)) _inputShape = input.ShapeArray();
        _output.Reshape(s[0], s[1], (s[2] - KernelSize) / Stride + 1, (s[3] - KernelSize) / Stride + 1);
        if (_argmax.Length < _output.Length) _argmax = new int[_output.Length];
        MaxPooling.Forward(input.Span, _output.Span, _argmax, s[0] * s[1], s[2], s[3], KernelSize, Stride, _compute.Pool);
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!outputGradient.SameShape(_output.Shape))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output {_output.ShapeText}");
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(_inputShape);
        MaxPooling.Backward(outputGradient.Span, _argmax, _inputGradient.Span, _inputShape[0] * _inputShape[1],
            _inputShape[2], _inputShape[3], KernelSize, Stride, _compute.Pool);
        return _inputGradient;
    }
}
