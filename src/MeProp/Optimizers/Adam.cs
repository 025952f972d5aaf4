using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Optimizers;

/// <summary>
/// Adam (Kingma and Ba), in PyTorch's arithmetic: m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
/// p -= (lr / (1-β1^t)) · m / (sqrt(v) / sqrt(1-β2^t) + ε). One fused pass per parameter reads p, g,
/// m, v once, writes p, m, v and zeroes g. Threads split each parameter into fixed chunks.
/// <para>
/// A step can also be taken in phases, so that a layer applies the update during its own backward
/// while each block of its gradient is still in cache (see <see cref="Linear.FusedOptimizer"/>):
/// <see cref="BeginStep"/>, then backward, in which a layer <see cref="Claim"/>s a parameter and
/// updates it range by range with <see cref="UpdateRange"/> (or with <see cref="CurrentStep"/> in a
/// kernel), then <see cref="FinishStep"/>, which updates every parameter not claimed.
/// <see cref="Update"/> is BeginStep followed by FinishStep.
/// </para>
/// </summary>
public sealed unsafe class Adam : IOptimizer
{
    private const int Chunk = 1 << 14;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly Tensor[] _m, _v;
    private readonly Dictionary<Parameter, int> _index;
    private readonly bool[] _claimed;
    private readonly WorkerPool _pool;
    private AdamStep _step;

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
    }

    public float LearningRate { get; }
    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Epsilon { get; }
    public long Step { get; private set; }

    /// <summary>True between <see cref="BeginStep"/> and <see cref="FinishStep"/>.</summary>
    public bool StepInProgress { get; private set; }

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
        {
            if (_claimed[i]) continue;
            var p = _parameters[i];
            fixed (float* pp = p.Value.Span, pg = p.Gradient.Span, pm = _m[i].Span, pv = _v[i].Span)
            {
                var job = new Job { P = pp, G = pg, M = pm, V = pv, Length = p.Value.Length, Step = _step };
                _pool.Run((job.Length + Chunk - 1) / Chunk, &UpdateChunk, &job);
            }
        }
        Array.Clear(_claimed);
        StepInProgress = false;
    }

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

/// <summary>
/// The constants of one Adam step and its element-wise arithmetic, shared by the optimizer's own pass
/// and by layers that apply the update during backward, so both give the same bits.
/// </summary>
public readonly unsafe struct AdamStep(float beta1, float beta2, float stepSize, float inverseRootBias2, float epsilon)
{
    /// <summary>
    /// Moments smaller than this are stored as zero. Weights whose gradient stays zero (dead ReLUs,
    /// rows meProp never keeps) decay their moments geometrically (0.9^t, 0.999^t) into subnormal floats
    /// after an epoch or so, and arithmetic on subnormals is about a hundred times slower on x86. A
    /// moment this small moves its weight by at most about lr·1e-30/ε, which is nothing.
    /// </summary>
    internal const float Tiny = 1e-30f;

    public float Beta1 { get; } = beta1;
    public float Beta2 { get; } = beta2;
    /// <summary>lr / (1 - β1^t).</summary>
    public float StepSize { get; } = stepSize;
    /// <summary>1 / sqrt(1 - β2^t).</summary>
    public float InverseRootBias2 { get; } = inverseRootBias2;
    public float Epsilon { get; } = epsilon;

    /// <summary>
    /// Updates p, m, v [length] from g [length], clearing g when asked. Every operation is a single
    /// IEEE-rounded one (no FMA), so the SIMD body and the scalar tail give the same bits per element,
    /// wherever a range starts.
    /// </summary>
    public void Apply(float* p, float* g, float* m, float* v, int length, bool clearGradient)
    {
        var vectors = new AdamStepVectors(this);
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= length; i += 16)
            {
                vectors.Apply(Vector512.Load(g + i), p + i, m + i, v + i);
                if (clearGradient) Vector512.Store(Vector512<float>.Zero, g + i);
            }
        int width = Vector<float>.Count;
        for (; i + width <= length; i += width)
        {
            vectors.Apply(Vector.Load(g + i), p + i, m + i, v + i);
            if (clearGradient) Vector.Store(Vector<float>.Zero, g + i);
        }
        for (; i < length; i++)
        {
            Apply(g[i], p + i, m + i, v + i);
            if (clearGradient) g[i] = 0;
        }
    }

    /// <summary>Updates one value *p and its moments *m, *v from gradient g.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Apply(float g, float* p, float* m, float* v)
    {
        float mi = Beta1 * *m + (1 - Beta1) * g;
        float vi = Beta2 * *v + (1 - Beta2) * g * g;
        if (MathF.Abs(mi) < Tiny) mi = 0;
        if (vi < Tiny) vi = 0;
        *m = mi;
        *v = vi;
        *p -= StepSize * mi / (MathF.Sqrt(vi) * InverseRootBias2 + Epsilon);
    }
}

/// <summary>
/// An <see cref="AdamStep"/>'s constants broadcast to SIMD vectors once, for kernels that update a
/// vector at a time (made once per task, not per vector).
/// </summary>
public readonly struct AdamStepVectors(AdamStep step)
{
    private readonly Vector<float> _beta1 = new(step.Beta1), _beta2 = new(step.Beta2);
    private readonly Vector<float> _oneMinusBeta1 = new(1 - step.Beta1), _oneMinusBeta2 = new(1 - step.Beta2);
    private readonly Vector<float> _stepSize = new(step.StepSize), _inverseRootBias2 = new(step.InverseRootBias2);
    private readonly Vector<float> _epsilon = new(step.Epsilon), _tiny = new(AdamStep.Tiny);
    private readonly Vector512<float> _beta1x16 = Vector512.Create(step.Beta1), _beta2x16 = Vector512.Create(step.Beta2);
    private readonly Vector512<float> _oneMinusBeta1x16 = Vector512.Create(1 - step.Beta1), _oneMinusBeta2x16 = Vector512.Create(1 - step.Beta2);
    private readonly Vector512<float> _stepSizex16 = Vector512.Create(step.StepSize), _inverseRootBias2x16 = Vector512.Create(step.InverseRootBias2);
    private readonly Vector512<float> _epsilonx16 = Vector512.Create(step.Epsilon), _tinyx16 = Vector512.Create(AdamStep.Tiny);

    /// <summary>Updates Vector&lt;float&gt;.Count values at p and their moments at m, v from gradient g (as <see cref="AdamStep.Apply(float, float*, float*, float*)"/> per lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe void Apply(Vector<float> g, float* p, float* m, float* v)
    {
        var mi = _beta1 * Vector.Load(m) + _oneMinusBeta1 * g;
        var vi = _beta2 * Vector.Load(v) + _oneMinusBeta2 * g * g;
        mi = Vector.ConditionalSelect(Vector.LessThan(Vector.Abs(mi), _tiny), Vector<float>.Zero, mi);
        vi = Vector.ConditionalSelect(Vector.LessThan(vi, _tiny), Vector<float>.Zero, vi);
        Vector.Store(mi, m);
        Vector.Store(vi, v);
        Vector.Store(Vector.Load(p) - _stepSize * mi / (Vector.SquareRoot(vi) * _inverseRootBias2 + _epsilon), p);
    }

    /// <summary>
    /// As <see cref="Apply(Vector{float}, float*, float*, float*)"/> for 16 values: the same IEEE
    /// operations lane by lane, so the same bits. Where 512-bit vectors are fast, one of these costs
    /// far less than two 256-bit halves (fc1's fused backward: 20-25% of the whole pass).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe void Apply(Vector512<float> g, float* p, float* m, float* v)
    {
        var mi = _beta1x16 * Vector512.Load(m) + _oneMinusBeta1x16 * g;
        var vi = _beta2x16 * Vector512.Load(v) + _oneMinusBeta2x16 * g * g;
        mi = Vector512.ConditionalSelect(Vector512.LessThan(Vector512.Abs(mi), _tinyx16), Vector512<float>.Zero, mi);
        vi = Vector512.ConditionalSelect(Vector512.LessThan(vi, _tinyx16), Vector512<float>.Zero, vi);
        Vector512.Store(mi, m);
        Vector512.Store(vi, v);
        Vector512.Store(Vector512.Load(p) - _stepSizex16 * mi / (Vector512.Sqrt(vi) * _inverseRootBias2x16 + _epsilonx16), p);
    }
}
