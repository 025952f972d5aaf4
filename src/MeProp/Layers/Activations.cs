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
                for (int i = 0; i < dx.Length; i++) dx[i] = y[i] > 0 ? dy[i] : 0f;
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
}
