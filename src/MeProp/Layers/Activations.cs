using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using MeProp.Kernels;
using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>Which element-wise nonlinearity a model uses.</summary>
public enum ActivationKind { Relu, Sigmoid, Tanh }

/// <summary>
/// Element-wise nonlinearity y = f(x), any shape. Backward uses the saved output:
/// ReLU dx = dy·[y &gt; 0]; sigmoid dx = dy·y·(1 - y); tanh dx = dy·(1 - y²).
/// Given a compute context, ReLU over a large tensor is split into equal runs over its pool (each
/// value's result is the same whoever computes it).
/// </summary>
public sealed unsafe class Activation : IIgnoresGradientAtZeros
{
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    private readonly ComputeContext? _compute;

    /// <summary>
    /// Fewest values for which ReLU is split over the pool: 250,880 (32 maps of 28 x 28, batch 10) took 80 us
    /// forward and ~150 us backward on one thread; a few thousand are not worth waking a worker for.
    /// </summary>
    private const int ParallelFrom = 1 << 16;

    public Activation(string name, ActivationKind kind, ComputeContext? compute = null)
    {
        Name = name;
        Kind = kind;
        _compute = compute;
    }

    public string Name { get; }
    public ActivationKind Kind { get; }
    public IReadOnlyList<Parameter> Parameters => [];
    public bool ComputeInputGradient { get; set; } = true;

    public int[] OutputShape(ReadOnlySpan<int> inputShape) => inputShape.ToArray();

    /// <summary>ReLU's backward multiplies dy by [y &gt; 0]; sigmoid's and tanh's use dy wherever y is.</summary>
    public bool IgnoresGradientAtZeroOutputs(bool inputZerosIgnored) => Kind == ActivationKind.Relu;

    public Tensor Forward(Tensor input, bool training)
    {
        _output.Reshape(input.Shape);
        var x = input.Span;
        var y = _output.Span;
        switch (Kind)
        {
            case ActivationKind.Relu: RunRelu(x, default, y, backward: false); break;
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
                RunRelu(y, dy, dx, backward: true);
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

    private struct ReluJob
    {
        public float* Input, Gradient, Output;
        public int Length, Tasks;
        public bool Backward;
    }

    /// <summary>Forward: output = max(input, 0). Backward: output = gradient where input (y) &gt; 0, else 0.</summary>
    private void RunRelu(ReadOnlySpan<float> input, ReadOnlySpan<float> gradient, Span<float> output, bool backward)
    {
        var pool = _compute?.Pool;
        if (pool is null || pool.ThreadCount == 1 || output.Length < ParallelFrom)
        {
            if (backward) ReluBackward(input, gradient, output);
            else TensorPrimitives.Max(input, 0f, output);
            return;
        }
        fixed (float* pi = input, pg = gradient, po = output)
        {
            var job = new ReluJob { Input = pi, Gradient = pg, Output = po, Length = output.Length, Tasks = pool.ThreadCount, Backward = backward };
            pool.Run(job.Tasks, &ReluRun, &job);
        }
    }

    /// <summary>Task t's run: an equal share of 16-value blocks (a cache line each in an aligned tensor).</summary>
    private static void ReluRun(void* args, int task)
    {
        var j = (ReluJob*)args;
        var (first, last) = Im2Col.Range(task, j->Tasks, (j->Length + 15) / 16);
        int begin = Math.Min(j->Length, first * 16), end = Math.Min(j->Length, last * 16);
        var input = new ReadOnlySpan<float>(j->Input + begin, end - begin);
        var output = new Span<float>(j->Output + begin, end - begin);
        if (j->Backward) ReluBackward(input, new ReadOnlySpan<float>(j->Gradient + begin, end - begin), output);
        else TensorPrimitives.Max(input, 0f, output);
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
