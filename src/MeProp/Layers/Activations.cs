using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>Which element-wise nonlinearity a model uses.</summary>
public enum ActivationKind { Relu, Sigmoid, Tanh }

/// <summary>
/// Element-wise nonlinearity y = f(x), any shape. Backward uses the saved output:
/// ReLU dx = dy·[y &gt; 0]; sigmoid dx = dy·y·(1 - y); tanh dx = dy·(1 - y²).
/// </summary>
public sealed class Activation : ILayer
{
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);

    public Activation(string name, ActivationKind kind)
    {
        Name = name;
        Kind = kind;
    }

    public string Name { get; }
    public ActivationKind Kind { get; }
    public IReadOnlyList<Parameter> Parameters => [];
    public bool ComputeInputGradient { get; set; } = true;

    public int[] OutputShape(ReadOnlySpan<int> inputShape) => inputShape.ToArray();

    public Tensor Forward(Tensor input, bool training)
    {
        _output.Reshape(input.Shape);
        var x = input.Span;
        var y = _output.Span;
        switch (Kind)
        {
            case ActivationKind.Relu: TensorPrimitives.Max(x, 0f, y); break;
            case ActivationKind.Sigmoid: TensorPrimitives.Sigmoid(x, y); break;
            case ActivationKind.Tanh: TensorPrimitives.Tanh(x, y); break;
        }
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!outputGradient.SameShape(_output.Shape))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output {_output.ShapeText}");
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(_output.Shape);
        var dy = outputGradient.Span;
        var y = _output.Span;
        var dx = _inputGradient.Span;
        switch (Kind)
        {
            case ActivationKind.Relu:
                ReluBackward(y, dy, dx);
                break;
            case ActivationKind.Sigmoid:
                for (int i = 0; i < dx.Length; i++) dx[i] = dy[i] * y[i] * (1f - y[i]);
                break;
            case ActivationKind.Tanh:
                for (int i = 0; i < dx.Length; i++) dx[i] = dy[i] * (1f - y[i] * y[i]);
                break;
        }
        return _inputGradient;
    }

    /// <summary>dx = dy where y &gt; 0, else 0; branch-free, as half the entries take each side.</summary>
    private static void ReluBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            ref float py = ref MemoryMarshal.GetReference(y), pdy = ref MemoryMarshal.GetReference(dy), pdx = ref MemoryMarshal.GetReference(dx);
            for (; i + 16 <= dx.Length; i += 16)
            {
                var positive = Vector512.GreaterThan(Vector512.LoadUnsafe(ref py, (nuint)i), Vector512<float>.Zero);
                Vector512.BitwiseAnd(positive, Vector512.LoadUnsafe(ref pdy, (nuint)i)).StoreUnsafe(ref pdx, (nuint)i);
            }
        }
        for (; i < dx.Length; i++) dx[i] = y[i] > 0 ? dy[i] : 0f;
    }
}
