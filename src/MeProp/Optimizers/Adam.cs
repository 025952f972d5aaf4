using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Optimizers;

/// <summary>
/// Adam (Kingma and Ba), in PyTorch's arithmetic: m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
/// p -= (lr / (1-β1^t)) · m / (sqrt(v) / sqrt(1-β2^t) + ε). One fused pass per parameter reads p, g,
/// m, v once, writes p, m, v and zeroes g. Threads split each parameter into fixed chunks.
/// <para>
/// A step can also be taken in phases, so that parameters are updated during the backward while their
/// gradient is still in cache: <see cref="BeginStep"/>, then the backward, then <see cref="FinishStep"/>,
/// which updates every parameter not updated yet. <see cref="Update"/> is BeginStep followed by
/// FinishStep. In between, the update of a parameter can be taken over: through the gradient-ready hook
/// (<see cref="FuseIntoBackward"/>: the layers say when a gradient is final, see
/// <see cref="IGradientReadyHook"/>), or by hand, with <see cref="Claim"/> and <see cref="UpdateRange"/>
/// (or <see cref="CurrentStep"/> in a kernel).
/// </para>
/// </summary>
public sealed unsafe class Adam : IOptimizer, IGradientReadyHook
{
    private const int Chunk = 1 << 14;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly Tensor[] _m, _v;
    private readonly Dictionary<Parameter, int> _index;
    private readonly bool[] _claimed;
    /// <summary>Updated in this step's backward by the hook: a second backward in the step cannot be applied.</summary>
    private readonly bool[] _updatedInBackward;
    /// <summary>A backward outside a step left a gradient in it that the fused product would not read.</summary>
    private readonly bool[] _gradientFromOutsideStep;
    private readonly WorkerPool _pool;
    private AdamStep _step;
    /// <summary>Partial dX of the fused linear backward, shared by the layers (they run one at a time).</summary>
    private float[] _fusedScratch = [];

    public Adam(IReadOnlyList<Parameter> parameters, WorkerPool pool, float learningRate = 1e-3f,
        float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f)
    {
        if (!(learningRate > 0)) throw new ArgumentException($"Adam: learning rate must be positive, got {learningRate}");
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw new ArgumentException("Adam: betas must be in [0, 1)");
        if (!(epsilon > 0)) throw new ArgumentException("Adam: epsilon must be positive");
        _parameters = parameters;
        _pool = pool;
        LearningRate = learningRate; Beta1 = beta1; Beta2 = beta2; Epsilon = epsilon;
        _m = parameters.Select(p => new Tensor(p.Value.ShapeArray())).ToArray();
        _v = parameters.Select(p => new Tensor(p.Value.ShapeArray())).ToArray();
        _index = parameters.Select((p, i) => (p, i)).ToDictionary(x => x.p, x => x.i);
        _claimed = new bool[parameters.Count];
        _updatedInBackward = new bool[parameters.Count];
        _gradientFromOutsideStep = new bool[parameters.Count];
    }

    public float LearningRate { get; }
    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Epsilon { get; }
    public long Step { get; private set; }

    /// <summary>True between <see cref="BeginStep"/> and <see cref="FinishStep"/>.</summary>
    public bool StepInProgress { get; private set; }

    /// <summary>
    /// Whether this optimizer is its parameters' <see cref="Parameter.GradientHook"/>, applying its update
    /// during the backward of a step taken in phases (BeginStep, backward, FinishStep) where that pays:
    /// a dense linear layer's weight at batches up to <see cref="FusedLinearAdam.BatchLimit"/> is
    /// updated inside its backward product (<see cref="FusedLinearAdam"/>: dW never goes to memory), and a
    /// gradient the layer reports final (a linear layer's bias) is applied at once. The results are those
    /// of the plain backward and <see cref="Update"/>, bit for bit. A step then takes one backward: a second
    /// one (gradient accumulation) throws, as the first has been applied already; accumulate with this off.
    /// A gradient left by a backward outside a step is added to the step's as usual (that weight is not fused).
    /// </summary>
    public bool FuseIntoBackward
    {
        get => _parameters.Count > 0 && _parameters.All(p => p.GradientHook == this);
        set
        {
            for (int i = 0; i < _parameters.Count; i++)
            {
                var p = _parameters[i];
                if (value)
                {
                    p.GradientHook = this;
                    // A gradient already there (a backward before the hook was set) is one the fused product would not read.
                    if (p.Gradient.Span.IndexOfAnyExcept(0f) >= 0) _gradientFromOutsideStep[i] = true;
                }
                else if (p.GradientHook == this) p.GradientHook = null;
            }
        }
    }

    /// <summary>Constants of the step in progress (valid between BeginStep and FinishStep).</summary>
    public AdamStep CurrentStep => StepInProgress ? _step : throw new InvalidOperationException("Adam: no step in progress");

    public void Update()
    {
        BeginStep();
        FinishStep();
    }

    /// <summary>Starts step t+1: counts it and fixes its bias-corrected step size.</summary>
    public void BeginStep()
    {
        if (StepInProgress) throw new InvalidOperationException("Adam: BeginStep while a step is in progress");
        Step++;
        double bias1 = 1 - Math.Pow(Beta1, Step), bias2 = 1 - Math.Pow(Beta2, Step);
        _step = new AdamStep(Beta1, Beta2, (float)(LearningRate / bias1), (float)(1 / Math.Sqrt(bias2)), Epsilon);
        StepInProgress = true;
    }

    /// <summary>
    /// Takes over this step's update of <paramref name="parameter"/>: the caller updates all of it
    /// (through <see cref="UpdateRange"/> or <see cref="CurrentStep"/>) from a gradient it holds, and
    /// <see cref="FinishStep"/> leaves it alone, its Gradient included. Returns its moments. Call from
    /// one thread, before updating ranges from several.
    /// </summary>
    public (Tensor ExpAvg, Tensor ExpAvgSq) Claim(Parameter parameter)
    {
        if (!StepInProgress) throw new InvalidOperationException($"Adam: {parameter.Name} claimed outside a step");
        if (!_index.TryGetValue(parameter, out int i)) throw new ArgumentException($"Adam: {parameter.Name} is not one of its parameters");
        _claimed[i] = true;
        return (_m[i], _v[i]);
    }

    /// <summary>
    /// Updates values [offset, offset + gradient.Length) of a claimed parameter from
    /// <paramref name="gradient"/> (not cleared), with the same arithmetic as <see cref="Update"/>.
    /// Ranges may be updated from several threads at once if they do not overlap.
    /// </summary>
    public void UpdateRange(Parameter parameter, int offset, ReadOnlySpan<float> gradient)
    {
        if (!StepInProgress) throw new InvalidOperationException($"Adam: {parameter.Name} updated outside a step");
        if (!_index.TryGetValue(parameter, out int i) || !_claimed[i]) throw new InvalidOperationException($"Adam: {parameter.Name} updated without being claimed");
        if ((uint)offset > (uint)parameter.Value.Length || gradient.Length > parameter.Value.Length - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"Adam: range [{offset}, {offset + gradient.Length}) outside {parameter.Name}");
        fixed (float* pp = parameter.Value.Span, pg = gradient, pm = _m[i].Span, pv = _v[i].Span)
            _step.Apply(pp + offset, pg, pm + offset, pv + offset, gradient.Length, clearGradient: false);
    }

    /// <summary>Updates every parameter not claimed in this step, clears their gradients and ends the step.</summary>
    public void FinishStep()
    {
        if (!StepInProgress) throw new InvalidOperationException("Adam: FinishStep without BeginStep");
        for (int i = 0; i < _parameters.Count; i++)
            if (!_claimed[i]) UpdateParameter(i);
        Array.Clear(_claimed);
        Array.Clear(_updatedInBackward);
        StepInProgress = false;
    }

    /// <summary>
    /// Ends a step that cannot finish (its backward threw), so that the optimizer can be used again:
    /// parameters already updated in it keep that update, the others are not updated and their gradients
    /// are cleared, and the step stays counted. The model is then part-way through a step: restore a
    /// checkpoint before training on. Does nothing outside a step.
    /// </summary>
    public void AbandonStep()
    {
        if (!StepInProgress) return;
        for (int i = 0; i < _parameters.Count; i++)
            if (!_claimed[i]) _parameters[i].Gradient.Span.Clear();
        Array.Clear(_claimed);
        Array.Clear(_updatedInBackward);
        StepInProgress = false;
    }

    /// <summary>Updates parameter i from its gradient and clears the gradient: its chunks run on the pool.</summary>
    private void UpdateParameter(int i)
    {
        var p = _parameters[i];
        fixed (float* pp = p.Value.Span, pg = p.Gradient.Span, pm = _m[i].Span, pv = _v[i].Span)
        {
            var job = new Job { P = pp, G = pg, M = pm, V = pv, Length = p.Value.Length, Step = _step };
            _pool.Run((job.Length + Chunk - 1) / Chunk, &UpdateChunk, &job);
        }
        _gradientFromOutsideStep[i] = false;
    }

    /// <summary>Within a step: updates the parameter now, as FinishStep would, and leaves it out of FinishStep.</summary>
    void IGradientReadyHook.GradientReady(Parameter parameter)
    {
        if (!StepInProgress || !_index.TryGetValue(parameter, out int i)) return;
        if (_updatedInBackward[i]) throw SecondBackward(parameter);
        if (_claimed[i]) return;
        _claimed[i] = _updatedInBackward[i] = true;
        UpdateParameter(i);
    }

    /// <summary>
    /// Within a step and at batches up to <see cref="FusedLinearAdam.BatchLimit"/>: the backward product
    /// and this step's update of the weight in one pass (<see cref="FusedLinearAdam"/>), the weight claimed.
    /// </summary>
    bool IGradientReadyHook.TryFuseLinearBackward(Parameter weight, ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> input, int batch, Span<float> inputGradient)
    {
        if (!_index.TryGetValue(weight, out int i)) return false;
        if (!StepInProgress)
        {
            // The layer adds this backward's product to the gradient, which the fused product cannot read.
            _gradientFromOutsideStep[i] = true;
            return false;
        }
        if (_updatedInBackward[i]) throw SecondBackward(weight);
        if (batch > FusedLinearAdam.BatchLimit || weight.Value.Rank != 2 || _claimed[i] || _gradientFromOutsideStep[i]) return false;
        int outFeatures = weight.Value.Dim(0), inFeatures = weight.Value.Dim(1);
        _claimed[i] = _updatedInBackward[i] = true;
        long scratch = FusedLinearAdam.ScratchLength(batch, outFeatures, inFeatures, !inputGradient.IsEmpty);
        if (_fusedScratch.Length < scratch) _fusedScratch = GC.AllocateUninitializedArray<float>(checked((int)scratch));
        FusedLinearAdam.Run(outputGradient, input, batch, outFeatures, inFeatures, weight.Value.Span, _m[i].Span, _v[i].Span,
            _step, inputGradient, _fusedScratch, _pool);
        return true;
    }

    private static InvalidOperationException SecondBackward(Parameter parameter) =>
        new($"Adam: {parameter.Name} was updated in this step's backward already (FuseIntoBackward); a step takes one backward, accumulate gradients with FuseIntoBackward off");

    private struct Job
    {
        public float* P, G, M, V;
        public int Length;
        public AdamStep Step;
    }

    private static void UpdateChunk(void* args, int chunk)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int start = chunk * Chunk, end = Math.Min(j.Length, start + Chunk);
        j.Step.Apply(j.P + start, j.G + start, j.M + start, j.V + start, end - start, clearGradient: true);
    }

    public IEnumerable<(string Name, Tensor State)> State()
    {
        for (int i = 0; i < _parameters.Count; i++)
        {
            yield return (_parameters[i].Name + ".exp_avg", _m[i]);
            yield return (_parameters[i].Name + ".exp_avg_sq", _v[i]);
        }
    }

    public void RestoreStep(long step) => Step = step;
}
