using MeProp.Kernels;
using MeProp.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace MeProp.Layers;

/// <summary>
/// Residual block: y = body(x) + shortcut(x). x [N, C, H, W] -> y [N, C', H', W'], the body's output
/// shape (any shape the layers accept, in fact). The body is a chain of layers (conv, BN, ReLU, conv,
/// BN); the shortcut is the identity when it has no layers, and the body must then keep x's shape, or a
/// chain of its own that gives the body's shape (a 1x1 conv with stride 2, then BN).
/// Backward: dy goes back through the body in reverse order and through the shortcut in reverse order
/// (straight through for the identity), and dx = body's dx + shortcut's dx. With
/// <see cref="ComputeInputGradient"/> false the first layer of the body and of the shortcut compute no
/// dx and Backward returns null; the parameter gradients still accumulate.
/// The children (body, then shortcut) are built by the caller and named with the block's name as a
/// prefix ("block1.conv1", "block1.shortcut.conv"); the model reaches them through
/// <see cref="Children"/> for checkpoint state, meProp and counters, so the block holds no state itself.
/// </summary>
public sealed unsafe class Residual : ICompositeLayer
{
    /// <summary>
    /// Fewest values for which the sums are split over the pool: the same element-wise cost as
    /// <see cref="Activation"/>'s ReLU, and the same threshold.
    /// </summary>
    private const int ParallelFrom = 1 << 16;

    private readonly ILayer[] _body;
    private readonly ILayer[] _shortcut;
    private readonly ComputeContext _compute;
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    private bool _computeInputGradient = true;

    public Residual(string name, IEnumerable<ILayer> body, IEnumerable<ILayer> shortcut, ComputeContext compute)
    {
        _body = body.ToArray();
        _shortcut = shortcut.ToArray();
        if (_body.Length == 0) throw new ArgumentException($"{name}: a residual block needs at least one body layer");
        var stray = _body.Concat(_shortcut).FirstOrDefault(l => !l.Name.StartsWith(name + ".", StringComparison.Ordinal));
        if (stray is not null)
            throw new ArgumentException($"{name}: layer '{stray.Name}' must be named with the block's prefix '{name}.' (its checkpoint names come from it)");
        Name = name;
        _compute = compute;
        Children = [.. _body, .. _shortcut];
        Parameters = Children.SelectMany(l => l.Parameters).ToArray();
    }

    public string Name { get; }

    /// <summary>The body's layers, then the shortcut's.</summary>
    public IReadOnlyList<ILayer> Children { get; }

    /// <summary>The children's parameters, in <see cref="Children"/> order.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>True when the shortcut has no layers (y = body(x) + x).</summary>
    public bool IdentityShortcut => _shortcut.Length == 0;

    /// <summary>The block's layers, in order.</summary>
    public IReadOnlyList<ILayer> Body => _body;

    /// <summary>The shortcut's layers, in order; empty for the identity.</summary>
    public IReadOnlyList<ILayer> Shortcut => _shortcut;

    /// <summary>Whether Backward computes dL/dx; passed on to the first layer of the body and of the shortcut, which are the ones that would compute it.</summary>
    public bool ComputeInputGradient
    {
        get => _computeInputGradient;
        set
        {
            _computeInputGradient = value;
            _body[0].ComputeInputGradient = value;
            if (_shortcut.Length > 0) _shortcut[0].ComputeInputGradient = value;
        }
    }

    public int[] OutputShape(ReadOnlySpan<int> inputShape)
    {
        int[] bodyShape = ChainShape(_body, inputShape);
        int[] shortcutShape = ChainShape(_shortcut, inputShape);
        if (!bodyShape.AsSpan().SequenceEqual(shortcutShape)) throw ShapeMismatch(bodyShape, shortcutShape);
        return bodyShape;
    }

    private static int[] ChainShape(ILayer[] layers, ReadOnlySpan<int> inputShape)
    {
        int[] shape = inputShape.ToArray();
        foreach (var layer in layers) shape = layer.OutputShape(shape);
        return shape;
    }

    private ArgumentException ShapeMismatch(ReadOnlySpan<int> bodyShape, ReadOnlySpan<int> shortcutShape) =>
        new($"{Name}: the body gives [{string.Join(", ", bodyShape.ToArray())}] but the " +
            $"{(IdentityShortcut ? "identity shortcut" : "shortcut")} gives [{string.Join(", ", shortcutShape.ToArray())}]");

    public Tensor Forward(Tensor input, bool training)
    {
        var bodyOutput = input;
        foreach (var layer in _body) bodyOutput = layer.Forward(bodyOutput, training);
        var shortcutOutput = input;
        foreach (var layer in _shortcut) shortcutOutput = layer.Forward(shortcutOutput, training);
        if (!bodyOutput.SameShape(shortcutOutput.Shape)) throw ShapeMismatch(bodyOutput.Shape, shortcutOutput.Shape);
        _output.Reshape(bodyOutput.Shape);
        Add(bodyOutput.Span, shortcutOutput.Span, _output.Span);
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!outputGradient.SameShape(_output.Shape))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output {_output.ShapeText}");
        var bodyGradient = BackwardChain(_body, outputGradient);
        var shortcutGradient = BackwardChain(_shortcut, outputGradient);
        if (!ComputeInputGradient) return null;
        if (bodyGradient is null || shortcutGradient is null)
            throw new InvalidOperationException($"{Name}: the first layer of the body or shortcut computed no input gradient; set ComputeInputGradient on the block, not on its children");
        _inputGradient.Reshape(bodyGradient.Shape);
        Add(bodyGradient.Span, shortcutGradient.Span, _inputGradient.Span);
        return _inputGradient;
    }

    /// <summary>dy back through <paramref name="layers"/> in reverse order: dx of the first layer, or null when it computes none (dy itself for no layers).</summary>
    private static Tensor? BackwardChain(ILayer[] layers, Tensor outputGradient)
    {
        Tensor? gradient = outputGradient;
        for (int i = layers.Length - 1; i >= 0; i--)
        {
            gradient = layers[i].Backward(gradient!);
            if (gradient is null && i > 0)
                throw new InvalidOperationException($"{layers[i].Name} computed no input gradient, but {layers[i - 1].Name} before it needs one");
        }
        return gradient;
    }

    private struct AddJob
    {
        public float* A, B, Sum;
        public int Length, Tasks;
    }

    /// <summary>sum = a + b, split over the pool in equal runs when large (each value's sum is the same whoever computes it).</summary>
    private void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> sum)
    {
        var pool = _compute.Pool;
        if (pool.ThreadCount == 1 || sum.Length < ParallelFrom)
        {
            TensorPrimitives.Add(a, b, sum);
            return;
        }
        fixed (float* pa = a, pb = b, ps = sum)
        {
            var job = new AddJob { A = pa, B = pb, Sum = ps, Length = sum.Length, Tasks = pool.ThreadCount };
            pool.Run(job.Tasks, &AddRun, &job);
        }
    }

    /// <summary>Task t's run: an equal share of 16-value blocks (a cache line each in an aligned tensor).</summary>
    private static void AddRun(void* args, int task)
    {
        var j = (AddJob*)args;
        var (first, last) = Im2Col.Range(task, j->Tasks, (j->Length + 15) / 16);
        int begin = Math.Min(j->Length, first * 16), end = Math.Min(j->Length, last * 16);
        TensorPrimitives.Add(new ReadOnlySpan<float>(j->A + begin, end - begin), new ReadOnlySpan<float>(j->B + begin, end - begin),
            new Span<float>(j->Sum + begin, end - begin));
    }
}
