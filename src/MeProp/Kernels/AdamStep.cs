using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MeProp.Kernels;

/// <summary>
/// The constants of one Adam step and its element-wise arithmetic, shared by the optimizer's own pass
/// and by kernels that fuse the update into a backward product (<see cref="FusedLinearAdam"/>), so both
/// give the same bits.
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
    internal void Apply(float* p, float* g, float* m, float* v, int length, bool clearGradient)
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
    internal void Apply(float g, float* p, float* m, float* v)
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
internal readonly struct AdamStepVectors(AdamStep step)
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
    /// far less than two 256-bit halves (a 3136 x 1024 linear layer's fused
    /// backward: 20-25% of the whole pass).
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
