using MeProp.Kernels;
using MeProp.Optimizers;
using MeProp.Sparsity;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Layers;

/// <summary>
/// Fully-connected layer. x [N, In] -> y [N, Out] = x · W^T + b; weight [Out, In] (PyTorch layout), bias [Out].
/// Backward: dW += dY^T · x, db += column sums of dY, dx = dY · W. With a <see cref="Sparsifier"/>
/// (meProp) only the kept entries (n, j, v) are used: dW[j] += v·x[n], db[j] += v, dx[n] += v·W[j].
/// With a <see cref="FusedOptimizer"/> the dense backward also applies Adam's update (see there).
/// </summary>
public sealed class Linear : IMePropLayer, IStatefulLayer
{
    private readonly ComputeContext _compute;
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    private Tensor? _input;
    private float[] _fusedScratch = [];
    private float[] _biasGradient = [];

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

    /// <summary>
    /// When set, a dense Backward (no <see cref="Sparsifier"/>) made while this optimizer has a step in
    /// progress (between <see cref="Adam.BeginStep"/> and <see cref="Adam.FinishStep"/>) and with at
    /// most <see cref="FusedBatchLimit"/> examples also applies the step to Weight and Bias, block of
    /// rows by block, while each block of dW is still in cache (<see cref="FusedLinearAdam"/>): dW never
    /// goes to memory and the optimizer's own pass skips this layer. The result is bit for bit that of a
    /// plain Backward followed by <see cref="Adam.Update"/>. Weight.Gradient and Bias.Gradient are not
    /// touched, so they must hold no gradient from an earlier Backward (the optimizer clears them).
    /// A Backward outside a step (gradient checks, statistics) is a plain one.
    /// </summary>
    public Adam? FusedOptimizer { get; set; }

    /// <summary>
    /// Largest batch that is fused. On fc1 (3136 x 1024, 2 threads) fusion measured 20-30% faster than
    /// GEMMs + Adam's pass up to batch 14, even at 16, slower at 32 and three times slower at 100: each
    /// block of rows re-reads X and the partial dX (N x In each, from L2), which grows with N, while
    /// the GEMMs reuse them from registers.
    /// </summary>
    public const int FusedBatchLimit = 14;
    public long BackwardMacs { get; private set; }
    public long DenseBackwardMacs { get; private set; }
    public bool MeasureDensity { get; set; }
    public SparsityCounters GradientCounters => Sparsifier?.Counters ?? _denseCounters;
    private SparsityCounters _denseCounters;

    public void ResetCounters()
    {
        BackwardMacs = DenseBackwardMacs = 0;
        _denseCounters = default;
        if (Sparsifier is not null) Sparsifier.Counters = default;
    }

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
        _compute.Gemm.Multiply(false, true, n, OutFeatures, InFeatures, input.Span, InFeatures,
            Weight.Value.Span, InFeatures, _output.Span, OutFeatures, false);
        var bias = Bias.Value.Span;
        for (int i = 0; i < n; i++)
            System.Numerics.Tensors.TensorPrimitives.Add(_output.Span.Slice(i * OutFeatures, OutFeatures), bias, _output.Span.Slice(i * OutFeatures, OutFeatures));
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        var input = _input ?? throw new InvalidOperationException($"{Name}: Backward before Forward");
        int n = input.Dim(0);
        if (!outputGradient.SameShape([n, OutFeatures]))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output");
        long denseMacs = (long)n * OutFeatures * InFeatures;
        DenseBackwardMacs += ComputeInputGradient ? 2 * denseMacs : denseMacs;
        if (Sparsifier is null && MeasureDensity) _denseCounters.Add(outputGradient.Span);
        if (Sparsifier is not null) return SparseBackwardPass(outputGradient, input, n);
        BackwardMacs += ComputeInputGradient ? 2 * denseMacs : denseMacs;
        if (FusedOptimizer is { StepInProgress: true } adam && n <= FusedBatchLimit) return FusedBackwardPass(adam, outputGradient, input, n);
        var dy = outputGradient.Span;
        _compute.Gemm.Multiply(true, false, OutFeatures, InFeatures, n, dy, OutFeatures, input.Span, InFeatures,
            Weight.Gradient.Span, InFeatures, true);
        var db = Bias.Gradient.Span;
        for (int i = 0; i < n; i++) System.Numerics.Tensors.TensorPrimitives.Add(db, dy.Slice(i * OutFeatures, OutFeatures), db);
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(n, InFeatures);
        _compute.Gemm.Multiply(false, false, n, InFeatures, OutFeatures, dy, OutFeatures, Weight.Value.Span, InFeatures,
            _inputGradient.Span, InFeatures, false);
        return _inputGradient;
    }

    /// <summary>Dense backward with <paramref name="adam"/>'s step applied to the weight and bias, their gradients never stored.</summary>
    private Tensor? FusedBackwardPass(Adam adam, Tensor outputGradient, Tensor input, int n)
    {
        var dy = outputGradient.Span;
        var (expAvg, expAvgSq) = adam.Claim(Weight);
        adam.Claim(Bias);
        if (_biasGradient.Length != OutFeatures) _biasGradient = new float[OutFeatures];
        var db = _biasGradient.AsSpan();
        db.Clear();
        for (int i = 0; i < n; i++) System.Numerics.Tensors.TensorPrimitives.Add(db, dy.Slice(i * OutFeatures, OutFeatures), db);
        adam.UpdateRange(Bias, 0, db);
        long scratch = FusedLinearAdam.ScratchLength(n, OutFeatures, InFeatures, ComputeInputGradient);
        if (_fusedScratch.Length < scratch) _fusedScratch = GC.AllocateUninitializedArray<float>(checked((int)scratch));
        Span<float> dx = default;
        if (ComputeInputGradient)
        {
            _inputGradient.Reshape(n, InFeatures);
            dx = _inputGradient.Span;
        }
        FusedLinearAdam.Run(dy, input.Span, n, OutFeatures, InFeatures, Weight.Value.Span, expAvg.Span, expAvgSq.Span,
            adam.CurrentStep, dx, _fusedScratch, _compute.Pool);
        return ComputeInputGradient ? _inputGradient : null;
    }

    private Tensor? SparseBackwardPass(Tensor outputGradient, Tensor input, int n)
    {
        var sparse = Sparsifier!.Sparsify(outputGradient.Span, n, OutFeatures, 1, _compute.Pool);
        long kept = sparse.Count;
        SparseBackward.WeightGradient(sparse, input.Span, InFeatures, Weight.Gradient.Span, Bias.Gradient.Span, _compute.Pool);
        BackwardMacs += kept * InFeatures;
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(n, InFeatures);
        _inputGradient.Clear();
        SparseBackward.RowInputGradient(sparse, Weight.Value.Span, InFeatures, _inputGradient.Span, _compute.Pool);
        BackwardMacs += kept * InFeatures;
        return _inputGradient;
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() => Sparsifier?.StateTensors(Name) ?? [];

    public IEnumerable<(string Key, string Value)> StateMetadata() => Sparsifier?.StateMetadata(Name) ?? [];

    public void RestoreMetadata(IReadOnlyDictionary<string, string> metadata) => Sparsifier?.RestoreMetadata(Name, metadata);
}
