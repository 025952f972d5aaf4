using MeProp.Kernels;
using MeProp.Sparsity;
using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// Fully-connected layer. x [N, In] -> y [N, Out] = x · W^T + b; weight [Out, In] (PyTorch layout), bias [Out].
/// Backward: dW += dY^T · x, db += column sums of dY, dx = dY · W. With a <see cref="Sparsifier"/>
/// (meProp) only the kept entries (n, j, v) are used: dW[j] += v·x[n], db[j] += v, dx[n] += v·W[j].
/// The dense backward offers the weight's product to the weight's gradient-ready hook (an optimizer
/// that fuses its update into it, <see cref="IGradientReadyHook.TryFuseLinearBackward"/>); Backward
/// reports the bias gradient final to the bias's hook once it is summed. With <see cref="ExactSparsity"/>
/// on, an input that is mostly zeros is multiplied by its non-zeros only, in the forward and, unless an
/// optimizer fuses its update, in dW (<see cref="SparseInputProduct"/>), and, where the layers before it
/// ignore dL/dx at the input's zeros (<see cref="InputZerosNeedNoGradient"/>), dx is computed only at its
/// non-zeros.
/// </summary>
public sealed class Linear : IMePropLayer, IStatefulLayer
{
    private readonly ComputeContext _compute;
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    /// <summary>dL/dy's non-zero entries, when an exact sparse backward runs.</summary>
    private readonly SparseGradient _nonZeros = new();
    // The forward from a sparse input: its non-zeros per example, and per worker a transposed weight panel.
    private readonly SparseGradient _inputNonZeros = new();
    private readonly AlignedBuffer _panels = new();
    // The backward's dx at the input's non-zeros: per worker, a block of W's columns transposed.
    private readonly AlignedBuffer _inputGradientPanels = new();
    /// <summary>True from a Forward that multiplied only the input's non-zeros (kept in <see cref="_inputNonZeros"/>) until the next Forward.</summary>
    private bool _forwardFromNonZeros;
    private Tensor? _input;

    public Linear(string name, int inFeatures, int outFeatures, ComputeContext compute, Rng initRng)
    {
        if (inFeatures < 1 || outFeatures < 1) throw new ArgumentException($"{name}: feature counts must be positive");
        Name = name;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        _compute = compute;
        Weight = new Parameter(name + ".weight", outFeatures, inFeatures);
        Bias = new Parameter(name + ".bias", outFeatures);
        Initialization.PyTorchDefault(Weight.Value.Span, inFeatures, initRng);
        Initialization.PyTorchDefault(Bias.Value.Span, inFeatures, initRng);
        Parameters = [Weight, Bias];
    }

    public string Name { get; }
    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Parameter Weight { get; }
    public Parameter Bias { get; }
    public IReadOnlyList<Parameter> Parameters { get; }
    public bool ComputeInputGradient { get; set; } = true;
    public GradientSparsifier? Sparsifier { get; set; }
    public BackwardCounters Counters { get; } = new();

    /// <summary>Whether a backward without <see cref="Sparsifier"/> runs the sparse kernels on dL/dy's non-zero entries.</summary>
    public ExactSparsity ExactSparsity { get; set; }

    /// <summary>
    /// Whether the layers before this one ignore dL/dx wherever this layer's input is zero (ReLU, then max
    /// pooling or flatten: <see cref="IIgnoresGradientAtZeros"/>); the model sets it. Then a dense backward
    /// after a forward from the input's non-zeros computes dx = dy · W only at those non-zeros and returns
    /// zero elsewhere (<see cref="SparseInputProduct.InputGradient"/>): the work of the non-zeros instead
    /// of the whole product, with every gradient that reaches a parameter the same within float rounding.
    /// </summary>
    public bool InputZerosNeedNoGradient { get; set; }

    public int[] OutputShape(ReadOnlySpan<int> inputShape)
    {
        if (inputShape.Length != 2 || inputShape[1] != InFeatures)
            throw new ArgumentException($"{Name}: expected input [N, {InFeatures}], got [{string.Join(", ", inputShape.ToArray())}]");
        return [inputShape[0], OutFeatures];
    }

    public Tensor Forward(Tensor input, bool training)
    {
        if (input.Rank != 2 || input.Dim(1) != InFeatures) OutputShape(input.Shape); // throws with the shapes
        int n = input.Dim(0);
        _input = input;
        _output.Reshape(n, OutFeatures);
        _forwardFromNonZeros = SparseInputForwardApplies(input);
        if (_forwardFromNonZeros)
        {
            // Most of the input is zero (ReLU and pooling before this layer): multiply its non-zeros only.
            NonZeroGradient.Gather(input.Span, 1, n, InFeatures, _inputNonZeros, _compute.Pool);
            SparseInputProduct.Multiply(_inputNonZeros, Weight.Value.Span, InFeatures, OutFeatures, _output.Span,
                ScratchPanels(), _compute.Pool);
        }
        else
            _compute.Gemm.Multiply(false, true, n, OutFeatures, InFeatures, input.Span, InFeatures,
                Weight.Value.Span, InFeatures, _output.Span, OutFeatures, false);
        var bias = Bias.Value.Span;
        for (int i = 0; i < n; i++)
            System.Numerics.Tensors.TensorPrimitives.Add(_output.Span.Slice(i * OutFeatures, OutFeatures), bias, _output.Span.Slice(i * OutFeatures, OutFeatures));
        return _output;
    }

    /// <summary>
    /// Whether the forward multiplies only the input's non-zeros (<see cref="SparseInputProduct"/>): exact
    /// sparsity on and, unless Always, at most <see cref="ExactSparsityThresholds.LinearInput"/> of the
    /// input non-zero in a layer of at least <see cref="ExactSparsityThresholds.LinearInputMinOutputs"/>
    /// outputs. The choice reads the input only, so a run stays deterministic.
    /// </summary>
    private bool SparseInputForwardApplies(Tensor input) => ExactSparsity switch
    {
        ExactSparsity.Off => false,
        ExactSparsity.Always => true,
        _ => OutFeatures >= ExactSparsityThresholds.LinearInputMinOutputs
             && NonZeroGradient.Count(input.Span) <= ExactSparsityThresholds.LinearInput * input.Length,
    };

    public Tensor? Backward(Tensor outputGradient)
    {
        var input = _input ?? throw new InvalidOperationException($"{Name}: Backward before Forward");
        int n = input.Dim(0);
        if (!outputGradient.SameShape([n, OutFeatures]))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output");
        long denseMacs = (long)n * OutFeatures * InFeatures * (ComputeInputGradient ? 2 : 1);
        // A selection that keeps every entry (ratio 1: a schedule's dense epochs) ran only for its running
        // gradient and random stream: the backward below is a dense layer's, to the bit. The counters then
        // record that selection with the multiply-adds the products below do.
        SparseGradient? everyEntry = null;
        if (Sparsifier is not null)
        {
            var selected = Sparsifier.Sparsify(outputGradient.Span, n, OutFeatures, 1, _compute.Pool);
            if (!Sparsifier.KeepsEveryEntry)
            {
                Counters.AddSparse(selected, (ComputeInputGradient ? 2 : 1) * selected.Count * InFeatures, denseMacs);
                return SparseBackwardPass(selected, input, n);
            }
            everyEntry = selected;
        }
        var dy = outputGradient.Span;
        if (ComputeInputGradient) _inputGradient.Reshape(n, InFeatures);
        var dx = ComputeInputGradient ? _inputGradient.Span : default;
        // An update fused into the products beat the sparse kernels (and their separate update) at every
        // density timed (`meprop bench --exact-threshold`), so it is offered first.
        bool fused = ExactSparsity != ExactSparsity.Always && Weight.GradientHook?.TryFuseLinearBackward(Weight, dy, input.Span, n, dx) == true;
        if (fused || ExactSparsity == ExactSparsity.Off)
        {
            if (everyEntry is null) Counters.AddDense(dy, denseMacs);
            else Counters.AddSparse(everyEntry, denseMacs, denseMacs);
        }
        else
        {
            long nonZero = NonZeroGradient.Count(dy);
            if (ExactSparsity == ExactSparsity.Always || nonZero <= ExactSparsityThresholds.Linear * dy.Length)
            {
                NonZeroGradient.Gather(dy, n, OutFeatures, 1, _nonZeros, _compute.Pool);
                long macs = (ComputeInputGradient ? 2 : 1) * nonZero * InFeatures;
                if (everyEntry is null) Counters.AddExact(_nonZeros, macs, denseMacs);
                else Counters.AddSparse(everyEntry, macs, denseMacs);
                return SparseBackwardPass(_nonZeros, input, n);
            }
            if (everyEntry is null) Counters.AddDense(dy.Length, nonZero, denseMacs);
            else Counters.AddSparse(everyEntry, denseMacs, denseMacs);
        }
        if (!fused && _forwardFromNonZeros)
            // The forward found the input sparse: dW from its non-zeros too.
            SparseInputProduct.AddWeightGradient(_inputNonZeros, dy, InFeatures, OutFeatures, Weight.Gradient.Span,
                ScratchPanels(), _compute.Pool);
        else if (!fused)
            _compute.Gemm.Multiply(true, false, OutFeatures, InFeatures, n, dy, OutFeatures, input.Span, InFeatures,
                Weight.Gradient.Span, InFeatures, true);
        var db = Bias.Gradient.Span;
        for (int i = 0; i < n; i++) System.Numerics.Tensors.TensorPrimitives.Add(db, dy.Slice(i * OutFeatures, OutFeatures), db);
        Bias.GradientHook?.GradientReady(Bias);
        if (!ComputeInputGradient) return null;
        if (fused) return _inputGradient;
        if (_forwardFromNonZeros && InputZerosNeedNoGradient)
            SparseInputProduct.InputGradient(input.Span, dy, Weight.Value.Span, n, InFeatures, OutFeatures, dx,
                _inputGradientPanels.Span(SparseInputProduct.InputGradientPanelLength(OutFeatures, _compute.Threads)), _compute.Pool);
        else
            _compute.Gemm.Multiply(false, false, n, InFeatures, OutFeatures, dy, OutFeatures, Weight.Value.Span, InFeatures,
                dx, InFeatures, false);
        return _inputGradient;
    }

    /// <summary>The panels of the sparse-input product and weight gradient, one per worker.</summary>
    private Span<float> ScratchPanels() => _panels.Span(SparseInputProduct.PanelLength(InFeatures, _compute.Threads));

    /// <summary>dW, db and dx from the kept entries of dY (a meProp selection, or every non-zero).</summary>
    private Tensor? SparseBackwardPass(SparseGradient sparse, Tensor input, int n)
    {
        SparseBackward.WeightGradient(sparse, input.Span, InFeatures, Weight.Gradient.Span, Bias.Gradient.Span, _compute.Pool);
        Bias.GradientHook?.GradientReady(Bias);
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(n, InFeatures);
        _inputGradient.Clear();
        SparseBackward.RowInputGradient(sparse, Weight.Value.Span, InFeatures, _inputGradient.Span, _compute.Pool);
        return _inputGradient;
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() => Sparsifier?.StateTensors(Name) ?? [];

    public IEnumerable<(string Key, string Value)> StateMetadata() => Sparsifier?.StateMetadata(Name) ?? [];

    public void RestoreMetadata(IReadOnlyDictionary<string, string> metadata) => Sparsifier?.RestoreMetadata(Name, metadata);
}
