using System.Numerics;
using System.Runtime.CompilerServices;
using MeProp.Optimizers;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// Dense backward of a linear layer fused with Adam's update of its weight: for each block of rows of
/// W, dW_block = dYᵀ[block, :] · X, then dX += dY[:, block] · W_block (old weights), then Adam updates
/// W_block, m and v from dW_block while it is still in cache, so dW is never written to memory.
/// Legend: N batch, O output features (rows of W), I input features; dY [N, O], X [N, I], W, m, v [O, I],
/// dX [N, I], all row-major.
/// <para>
/// Summation order is the dense product's (<see cref="Gemm"/>): each dW element is one FMA chain over
/// the batch from zero; each dX element is an FMA chain over a group of <see cref="GroupRows"/> rows
/// (Gemm's depth block), and the groups' chains are added in group order. So, for N ≤ GroupRows, the
/// result is bit for bit that of Gemm followed by <see cref="Adam.Update"/>, at any thread count.
/// A group is also a thread's task; each writes its own partial dX (group 0 writes dX itself).
/// </para>
/// </summary>
public static unsafe class FusedLinearAdam
{
    /// <summary>Rows of W per task and per dX chain: Gemm's depth block, for identical sums.</summary>
    public const int GroupRows = Gemm.KC;

    /// <summary>Rows of W whose gradient is computed, then applied, together (4 rows of 3,136 are 50 KB: L1/L2).</summary>
    public const int BlockRows = 4;

    /// <summary>Scratch floats that <see cref="Run"/> needs: a gradient block per group, and a partial dX per group after the first.</summary>
    public static long ScratchLength(int n, int outFeatures, int inFeatures, bool inputGradient)
    {
        long groups = (outFeatures + GroupRows - 1) / GroupRows;
        return groups * BlockRows * inFeatures + (inputGradient ? (groups - 1) * n * inFeatures : 0);
    }

    private struct Job
    {
        public float* Dy, X, W, M, V, Dx, Gradients, Partials;
        public int N, Out, In;
        public AdamStep Step;
    }

    /// <summary>
    /// Computes dW from dY and X and applies Adam's <paramref name="step"/> to W, m, v with it; when
    /// <paramref name="dx"/> is not empty, sets dX = dY · W with the weights before the update.
    /// </summary>
    public static void Run(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, int n, int outFeatures, int inFeatures,
        Span<float> weight, Span<float> expAvg, Span<float> expAvgSq, in AdamStep step, Span<float> dx, Span<float> scratch, WorkerPool pool)
    {
        long weights = (long)outFeatures * inFeatures;
        bool inputGradient = !dx.IsEmpty;
        if (dy.Length < (long)n * outFeatures || x.Length < (long)n * inFeatures || weight.Length < weights
            || expAvg.Length < weights || expAvgSq.Length < weights || (inputGradient && dx.Length < (long)n * inFeatures)
            || scratch.Length < ScratchLength(n, outFeatures, inFeatures, inputGradient))
            throw new ArgumentException("fused linear backward: span too short");
        if (n == 0 || weights == 0) return;
        int groups = (outFeatures + GroupRows - 1) / GroupRows;
        fixed (float* pdy = dy, px = x, pw = weight, pm = expAvg, pv = expAvgSq, pdx = dx, ps = scratch)
        {
            var job = new Job
            {
                Dy = pdy, X = px, W = pw, M = pm, V = pv, Dx = inputGradient ? pdx : null,
                Gradients = ps, Partials = ps + (long)groups * BlockRows * inFeatures,
                N = n, Out = outFeatures, In = inFeatures, Step = step,
            };
            pool.Run(groups, &GroupTask, &job);
            if (inputGradient && groups > 1) pool.Run(n, &SumPartialsRow, &job);
        }
    }

    private static void GroupTask(void* args, int group)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int o0 = group * GroupRows, o1 = Math.Min(j.Out, o0 + GroupRows);
        long rowLength = j.In;
        float* gradient = j.Gradients + group * BlockRows * rowLength;
        float* dxPart = null;
        if (j.Dx is not null)
        {
            dxPart = group == 0 ? j.Dx : j.Partials + (group - 1) * j.N * rowLength;
            new Span<float>(dxPart, checked((int)(j.N * rowLength))).Clear();
        }
        for (int o = o0; o < o1; o += BlockRows)
        {
            int rows = Math.Min(BlockRows, o1 - o);
            if (rows == BlockRows) FourRows(ref j, o, gradient, dxPart);
            else for (int r = 0; r < rows; r++) OneRow(ref j, o + r, gradient + r * rowLength, dxPart);
            long offset = o * rowLength;
            j.Step.Apply(j.W + offset, gradient, j.M + offset, j.V + offset, (int)(rows * rowLength), clearGradient: false);
        }
    }

    /// <summary>
    /// Rows o..o+3: gradient[r, :] = Σ_t dY[t, o+r]·X[t, :] (a chain over t), and dX[t, :] += dY[t, o+r]·W[o+r, :]
    /// for r = 0..3 in order. The four weight vectors and gradient accumulators stay in registers.
    /// </summary>
    private static void FourRows(ref Job j, int o, float* gradient, float* dxPart)
    {
        int n = j.N, inFeatures = j.In, width = Vector<float>.Count;
        float* w0 = j.W + (long)o * inFeatures, w1 = w0 + inFeatures, w2 = w1 + inFeatures, w3 = w2 + inFeatures;
        float* g0 = gradient, g1 = g0 + inFeatures, g2 = g1 + inFeatures, g3 = g2 + inFeatures;
        float* dyColumn = j.Dy + o;
        int col = 0;
        for (; col + width <= inFeatures; col += width)
        {
            Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
            var wv0 = Vector.Load(w0 + col); var wv1 = Vector.Load(w1 + col);
            var wv2 = Vector.Load(w2 + col); var wv3 = Vector.Load(w3 + col);
            for (int t = 0; t < n; t++)
            {
                float* dyRow = dyColumn + (long)t * j.Out;
                var d0 = new Vector<float>(dyRow[0]); var d1 = new Vector<float>(dyRow[1]);
                var d2 = new Vector<float>(dyRow[2]); var d3 = new Vector<float>(dyRow[3]);
                var xv = Vector.Load(j.X + (long)t * inFeatures + col);
                a0 = Vector.FusedMultiplyAdd(d0, xv, a0); a1 = Vector.FusedMultiplyAdd(d1, xv, a1);
                a2 = Vector.FusedMultiplyAdd(d2, xv, a2); a3 = Vector.FusedMultiplyAdd(d3, xv, a3);
                if (dxPart is null) continue;
                float* dxAt = dxPart + (long)t * inFeatures + col;
                var sum = Vector.Load(dxAt);
                sum = Vector.FusedMultiplyAdd(d0, wv0, sum); sum = Vector.FusedMultiplyAdd(d1, wv1, sum);
                sum = Vector.FusedMultiplyAdd(d2, wv2, sum); sum = Vector.FusedMultiplyAdd(d3, wv3, sum);
                Vector.Store(sum, dxAt);
            }
            Vector.Store(a0, g0 + col); Vector.Store(a1, g1 + col); Vector.Store(a2, g2 + col); Vector.Store(a3, g3 + col);
        }
        for (; col < inFeatures; col++)
        {
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (int t = 0; t < n; t++)
            {
                float* dyRow = dyColumn + (long)t * j.Out;
                float xv = j.X[(long)t * inFeatures + col];
                a0 = MathF.FusedMultiplyAdd(dyRow[0], xv, a0); a1 = MathF.FusedMultiplyAdd(dyRow[1], xv, a1);
                a2 = MathF.FusedMultiplyAdd(dyRow[2], xv, a2); a3 = MathF.FusedMultiplyAdd(dyRow[3], xv, a3);
                if (dxPart is null) continue;
                float* dxAt = dxPart + (long)t * inFeatures + col;
                float sum = *dxAt;
                sum = MathF.FusedMultiplyAdd(dyRow[0], w0[col], sum); sum = MathF.FusedMultiplyAdd(dyRow[1], w1[col], sum);
                sum = MathF.FusedMultiplyAdd(dyRow[2], w2[col], sum); sum = MathF.FusedMultiplyAdd(dyRow[3], w3[col], sum);
                *dxAt = sum;
            }
            g0[col] = a0; g1[col] = a1; g2[col] = a2; g3[col] = a3;
        }
    }

    /// <summary>As <see cref="FourRows"/> for the one row o (the last rows of a group).</summary>
    private static void OneRow(ref Job j, int o, float* gradient, float* dxPart)
    {
        int n = j.N, inFeatures = j.In, width = Vector<float>.Count;
        float* w = j.W + (long)o * inFeatures;
        float* dyColumn = j.Dy + o;
        int col = 0;
        for (; col + width <= inFeatures; col += width)
        {
            Vector<float> a = default;
            var wv = Vector.Load(w + col);
            for (int t = 0; t < n; t++)
            {
                var d = new Vector<float>(dyColumn[(long)t * j.Out]);
                a = Vector.FusedMultiplyAdd(d, Vector.Load(j.X + (long)t * inFeatures + col), a);
                if (dxPart is null) continue;
                float* dxAt = dxPart + (long)t * inFeatures + col;
                Vector.Store(Vector.FusedMultiplyAdd(d, wv, Vector.Load(dxAt)), dxAt);
            }
            Vector.Store(a, gradient + col);
        }
        for (; col < inFeatures; col++)
        {
            float a = 0;
            for (int t = 0; t < n; t++)
            {
                float d = dyColumn[(long)t * j.Out];
                a = MathF.FusedMultiplyAdd(d, j.X[(long)t * inFeatures + col], a);
                if (dxPart is null) continue;
                float* dxAt = dxPart + (long)t * inFeatures + col;
                *dxAt = MathF.FusedMultiplyAdd(d, w[col], *dxAt);
            }
            gradient[col] = a;
        }
    }

    /// <summary>Row t of dX += the later groups' partial rows, in group order (Gemm adds its depth blocks the same way).</summary>
    private static void SumPartialsRow(void* args, int t)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int groups = (j.Out + GroupRows - 1) / GroupRows;
        var target = new Span<float>(j.Dx + (long)t * j.In, j.In);
        for (int group = 1; group < groups; group++)
            System.Numerics.Tensors.TensorPrimitives.Add(target, new ReadOnlySpan<float>(j.Partials + ((long)(group - 1) * j.N + t) * j.In, j.In), target);
    }
}
