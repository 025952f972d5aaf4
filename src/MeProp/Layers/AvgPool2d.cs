using MeProp.Kernels;
using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// Average pooling, KxK windows, stride S, no padding, floor mode (PyTorch's nn.AvgPool2d(K, S)).
/// x [N, C, H, W] -> y [N, C, (H-K)/S+1, (W-K)/S+1], y = window sum / (K·K); Backward spreads dy / (K·K)
/// over each window's inputs (see <see cref="AvgPooling"/>).
/// </summary>
public sealed class AvgPool2d : ILayer
{
    private readonly ComputeContext _compute;
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    private int[] _inputShape = [];

    public AvgPool2d(string name, int kernelSize, int stride, ComputeContext compute)
    {
        if (kernelSize < 1 || stride < 1) throw new ArgumentException($"{name}: kernel size and stride must be positive, got {kernelSize} and {stride}");
        Name = name;
        KernelSize = kernelSize;
        Stride = stride;
        _compute = compute;
    }

    public string Name { get; }
    public int KernelSize { get; }
    public int Stride { get; }
    public IReadOnlyList<Parameter> Parameters => [];
    public bool ComputeInputGradient { get; set; } = true;

    public int[] OutputShape(ReadOnlySpan<int> s) => PoolingGeometry.OutputShape(Name, KernelSize, Stride, s);

    public Tensor Forward(Tensor input, bool training)
    {
        var s = input.Shape;
        if (s.Length != 4 || s[2] < KernelSize || s[3] < KernelSize) OutputShape(s); // throws with the shapes
        _output.Reshape(s[0], s[1], (s[2] - KernelSize) / Stride + 1, (s[3] - KernelSize) / Stride + 1);
        if (!input.SameShape(_inputShape)) _inputShape = input.ShapeArray();
        AvgPooling.Forward(input.Span, _output.Span, s[0] * s[1], s[2], s[3], KernelSize, Stride, _compute.Pool);
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!outputGradient.SameShape(_output.Shape))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output {_output.ShapeText}");
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(_inputShape);
        AvgPooling.Backward(outputGradient.Span, _inputGradient.Span, _inputShape[0] * _inputShape[1],
            _inputShape[2], _inputShape[3], KernelSize, Stride, _compute.Pool);
        return _inputGradient;
    }
}
