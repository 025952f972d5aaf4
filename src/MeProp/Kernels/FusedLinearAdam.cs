using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// Dense backward of a linear layer fused with Adam's update of its weight: dW = dYᵀ · X, dX = dY · W
/// (the weights before the update) and Adam's step on W, m, v from dW, in one pass: each vector of dW
/// is applied as soon as it is summed, in registers, so dW never exists in memory. Adam alone is
/// bound by its square root and division (its own pass over a 3136 x 1024 weight costs about as much on
/// one core as the dW product), so the products' FMAs partly hide beside them, and W is read once for dX and
/// the update.
/// Legend: N batch, O output features (rows of W), I input features; dY [N, O], X [N, I], W, m, v [O, I],
/// dX [N, I], all row-major.
/// <para>
/// W, m and v stream past once, row by row, several rows at a time (8 with 512-bit vectors, 4 with
/// Vector&lt;float&gt;), so each X and partial dX vector loaded serves them all. A task owns a group
/// of <see cref="GroupRows"/> rows and writes its own partial dX (the first group writes dX itself);
/// the partials are added in group order at the end. (Tasks that own column chunks instead, walking
/// all rows, need no partials but read W, m and v in short strided runs: twice as slow, measured.)
/// </para>
/// <para>
/// Summation order is the dense product's (<see cref="Gemm"/>): each dW element is one FMA chain over
/// the batch from zero; each dX element is an FMA chain over each group of GroupRows rows (Gemm's
/// depth block) from zero, the groups' sums added in order. So, for N ≤ GroupRows, the result is bit
/// for bit that of Gemm followed by Adam's own pass (the same <see cref="AdamStep"/> arithmetic), at any
/// thread count.
/// </para>
/// </summary>
public static unsafe class FusedLinearAdam
{
    /// <summary>Rows of W per task and per dX chain: Gemm's depth block, for identical sums.</summary>
    public const int GroupRows = Gemm.KC;

    /// <summary>
    /// Largest batch at which the fused pass is used (by Adam's gradient-ready hook). Each group of rows
    /// re-reads X and its partial dX (N x I each, from L2), which grows with N, while the two products
    /// of the plain backward reuse them from registers: on a 3136 x 1024 weight with 2 threads the fused
    /// pass measured 20-30% faster than the products plus Adam's own pass up to batch 14, even at 16,
    /// slower at 32 and three times slower at 100. Measured on that shape only; the limit applies to
    /// every linear layer.
    /// </summary>
    public const int BatchLimit = 14;

    /// <summary>Scratch floats that <see cref="Run"/> needs: a partial dX per row group after the first.</summary>
    public static long ScratchLength(int n, int outFeatures, int inFeatures, bool inputGradient)
    {
        long groups = (outFeatures + GroupRows - 1) / GroupRows;
        return inputGradient ? (groups - 1) * n * inFeatures : 0;
    }

    private struct Job
    {
        public float* Dy, X, W, M, V, Dx, Partials;
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
                Dy = pdy, X = px, W = pw, M = pm, V = pv, Dx = inputGradient ? pdx : null, Partials = ps,
                N = n, Out = outFeatures, In = inFeatures, Step = step,
            };
            // Groups go to whichever worker is free: a 1024-row weight has four, and a fixed two each waited whenever
            // one core of the VM ran slow.
            pool.RunDynamic(groups, &GroupTask, &job);
            if (inputGradient && groups > 1) pool.Run(n, &SumPartialsRow, &job);
        }
    }

    private static void GroupTask(void* args, int group, int worker)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int o0 = group * GroupRows, o1 = Math.Min(j.Out, o0 + GroupRows);
        var adam = new AdamStepVectors(j.Step);
        float* chain = null;
        if (j.Dx is not null)
        {
            chain = group == 0 ? j.Dx : j.Partials + (long)(group - 1) * j.N * j.In;
            new Span<float>(chain, checked(j.N * j.In)).Clear();
        }
        int o = o0;
        // 512-bit vectors where the CPU has them, for the products and for Adam's arithmetic (in
        // 256-bit halves, with twice the selects, loads and stores, the whole pass took 25-35% longer).
        if (Vector512.IsHardwareAccelerated)
            for (; o + 8 <= o1; o += 8) EightRows512(ref j, in adam, o, chain);
        for (; o + 4 <= o1; o += 4) FourRows(ref j, in adam, o, chain);
        for (; o < o1; o++) OneRow(ref j, in adam, o, chain);
    }

    /// <summary>
    /// Rows o..o+3: g_r = Σ_t dY[t, o+r]·X[t, :] (a chain over t, from zero), chain[t, :] += dY[t, o+r]·W[o+r, :]
    /// for r = 0..3 in order with the old weights, then Adam's update of row o+r from g_r, over columns
    /// from <paramref name="firstColumn"/> on. The job's
    /// fields are copied to locals first: stores through float pointers would otherwise make the JIT
    /// reload them on every iteration.
    /// </summary>
    private static void FourRows(ref Job j, in AdamStepVectors adam, int o, float* chain, int firstColumn = 0)
    {
        int n = j.N, width = Vector<float>.Count, inFeatures = j.In, outFeatures = j.Out;
        long row = (long)o * inFeatures;
        float* w0 = j.W + row, w1 = w0 + inFeatures, w2 = w1 + inFeatures, w3 = w2 + inFeatures;
        float* m0 = j.M + row, m1 = m0 + inFeatures, m2 = m1 + inFeatures, m3 = m2 + inFeatures;
        float* v0 = j.V + row, v1 = v0 + inFeatures, v2 = v1 + inFeatures, v3 = v2 + inFeatures;
        float* dyColumn = j.Dy + o, x = j.X;
        int col = firstColumn;
        for (; col + width <= inFeatures; col += width)
        {
            Vector<float> g0 = default, g1 = default, g2 = default, g3 = default;
            var wv0 = Vector.Load(w0 + col); var wv1 = Vector.Load(w1 + col);
            var wv2 = Vector.Load(w2 + col); var wv3 = Vector.Load(w3 + col);
            float* dyRow = dyColumn, xAt = x + col, dxAt = chain + col;
            for (int t = 0; t < n; t++, dyRow += outFeatures, xAt += inFeatures, dxAt += inFeatures)
            {
                var d0 = new Vector<float>(dyRow[0]); var d1 = new Vector<float>(dyRow[1]);
                var d2 = new Vector<float>(dyRow[2]); var d3 = new Vector<float>(dyRow[3]);
                var xv = Vector.Load(xAt);
                g0 = Vector.FusedMultiplyAdd(d0, xv, g0); g1 = Vector.FusedMultiplyAdd(d1, xv, g1);
                g2 = Vector.FusedMultiplyAdd(d2, xv, g2); g3 = Vector.FusedMultiplyAdd(d3, xv, g3);
                if (chain is null) continue;
                var sum = Vector.Load(dxAt);
                sum = Vector.FusedMultiplyAdd(d0, wv0, sum); sum = Vector.FusedMultiplyAdd(d1, wv1, sum);
                sum = Vector.FusedMultiplyAdd(d2, wv2, sum); sum = Vector.FusedMultiplyAdd(d3, wv3, sum);
                Vector.Store(sum, dxAt);
            }
            adam.Apply(g0, w0 + col, m0 + col, v0 + col);
            adam.Apply(g1, w1 + col, m1 + col, v1 + col);
            adam.Apply(g2, w2 + col, m2 + col, v2 + col);
            adam.Apply(g3, w3 + col, m3 + col, v3 + col);
        }
        for (; col < inFeatures; col++)
        {
            float g0 = 0, g1 = 0, g2 = 0, g3 = 0;
            float* dyRow = dyColumn, xAt = x + col, dxAt = chain + col;
            for (int t = 0; t < n; t++, dyRow += outFeatures, xAt += inFeatures, dxAt += inFeatures)
            {
                float xv = *xAt;
                g0 = MathF.FusedMultiplyAdd(dyRow[0], xv, g0); g1 = MathF.FusedMultiplyAdd(dyRow[1], xv, g1);
                g2 = MathF.FusedMultiplyAdd(dyRow[2], xv, g2); g3 = MathF.FusedMultiplyAdd(dyRow[3], xv, g3);
                if (chain is null) continue;
                float sum = *dxAt;
                sum = MathF.FusedMultiplyAdd(dyRow[0], w0[col], sum); sum = MathF.FusedMultiplyAdd(dyRow[1], w1[col], sum);
                sum = MathF.FusedMultiplyAdd(dyRow[2], w2[col], sum); sum = MathF.FusedMultiplyAdd(dyRow[3], w3[col], sum);
                *dxAt = sum;
            }
            j.Step.Apply(g0, w0 + col, m0 + col, v0 + col);
            j.Step.Apply(g1, w1 + col, m1 + col, v1 + col);
            j.Step.Apply(g2, w2 + col, m2 + col, v2 + col);
            j.Step.Apply(g3, w3 + col, m3 + col, v3 + col);
        }
    }

    /// <summary>As <see cref="FourRows"/> for rows o..o+7 with 512-bit vectors; the column tail is FourRows' loops.</summary>
    private static void EightRows512(ref Job j, in AdamStepVectors adam, int o, float* chain)
    {
        int n = j.N, inFeatures = j.In, outFeatures = j.Out;
        long row = (long)o * inFeatures;
        float* w0 = j.W + row, m0 = j.M + row, v0 = j.V + row;
        float* dyColumn = j.Dy + o, x = j.X;
        int col = 0;
        for (; col + 16 <= inFeatures; col += 16)
        {
            Vector512<float> g0 = default, g1 = default, g2 = default, g3 = default, g4 = default, g5 = default, g6 = default, g7 = default;
            float* w = w0 + col;
            var wv0 = Vector512.Load(w); var wv1 = Vector512.Load(w + inFeatures);
            var wv2 = Vector512.Load(w + 2 * inFeatures); var wv3 = Vector512.Load(w + 3 * inFeatures);
            var wv4 = Vector512.Load(w + 4 * inFeatures); var wv5 = Vector512.Load(w + 5 * inFeatures);
            var wv6 = Vector512.Load(w + 6 * inFeatures); var wv7 = Vector512.Load(w + 7 * inFeatures);
            float* dyRow = dyColumn, xAt = x + col, dxAt = chain + col;
            if (chain is null)
            {
                for (int t = 0; t < n; t++, dyRow += outFeatures, xAt += inFeatures)
                {
                    var xv = Vector512.Load(xAt);
                    g0 = Vector512.FusedMultiplyAdd(Vector512.Create(dyRow[0]), xv, g0); g1 = Vector512.FusedMultiplyAdd(Vector512.Create(dyRow[1]), xv, g1);
                    g2 = Vector512.FusedMultiplyAdd(Vector512.Create(dyRow[2]), xv, g2); g3 = Vector512.FusedMultiplyAdd(Vector512.Create(dyRow[3]), xv, g3);
                    g4 = Vector512.FusedMultiplyAdd(Vector512.Create(dyRow[4]), xv, g4); g5 = Vector512.FusedMultiplyAdd(Vector512.Create(dyRow[5]), xv, g5);
                    g6 = Vector512.FusedMultiplyAdd(Vector512.Create(dyRow[6]), xv, g6); g7 = Vector512.FusedMultiplyAdd(Vector512.Create(dyRow[7]), xv, g7);
                }
            }
            else
            {
                // Each broadcast feeds its two FMAs at once, so one is live at a time: with all eight
                // live the JIT ran out of vector registers and kept the sums g on the stack.
                for (int t = 0; t < n; t++, dyRow += outFeatures, xAt += inFeatures, dxAt += inFeatures)
                {
                    var xv = Vector512.Load(xAt);
                    var sum = Vector512.Load(dxAt);
                    var d = Vector512.Create(dyRow[0]); g0 = Vector512.FusedMultiplyAdd(d, xv, g0); sum = Vector512.FusedMultiplyAdd(d, wv0, sum);
                    d = Vector512.Create(dyRow[1]); g1 = Vector512.FusedMultiplyAdd(d, xv, g1); sum = Vector512.FusedMultiplyAdd(d, wv1, sum);
                    d = Vector512.Create(dyRow[2]); g2 = Vector512.FusedMultiplyAdd(d, xv, g2); sum = Vector512.FusedMultiplyAdd(d, wv2, sum);
                    d = Vector512.Create(dyRow[3]); g3 = Vector512.FusedMultiplyAdd(d, xv, g3); sum = Vector512.FusedMultiplyAdd(d, wv3, sum);
                    d = Vector512.Create(dyRow[4]); g4 = Vector512.FusedMultiplyAdd(d, xv, g4); sum = Vector512.FusedMultiplyAdd(d, wv4, sum);
                    d = Vector512.Create(dyRow[5]); g5 = Vector512.FusedMultiplyAdd(d, xv, g5); sum = Vector512.FusedMultiplyAdd(d, wv5, sum);
                    d = Vector512.Create(dyRow[6]); g6 = Vector512.FusedMultiplyAdd(d, xv, g6); sum = Vector512.FusedMultiplyAdd(d, wv6, sum);
                    d = Vector512.Create(dyRow[7]); g7 = Vector512.FusedMultiplyAdd(d, xv, g7); sum = Vector512.FusedMultiplyAdd(d, wv7, sum);
                    Vector512.Store(sum, dxAt);
                }
            }
            long at = col;
            adam.Apply(g0, w0 + at, m0 + at, v0 + at); at += inFeatures;
            adam.Apply(g1, w0 + at, m0 + at, v0 + at); at += inFeatures;
            adam.Apply(g2, w0 + at, m0 + at, v0 + at); at += inFeatures;
            adam.Apply(g3, w0 + at, m0 + at, v0 + at); at += inFeatures;
            adam.Apply(g4, w0 + at, m0 + at, v0 + at); at += inFeatures;
            adam.Apply(g5, w0 + at, m0 + at, v0 + at); at += inFeatures;
            adam.Apply(g6, w0 + at, m0 + at, v0 + at); at += inFeatures;
            adam.Apply(g7, w0 + at, m0 + at, v0 + at);
        }
        if (col < inFeatures)
        {
            FourRows(ref j, in adam, o, chain, col);
            FourRows(ref j, in adam, o + 4, chain, col);
        }
    }

    /// <summary>As <see cref="FourRows"/> for the one row o (the last rows of a group).</summary>
    private static void OneRow(ref Job j, in AdamStepVectors adam, int o, float* chain)
    {
        int n = j.N, width = Vector<float>.Count, inFeatures = j.In, outFeatures = j.Out;
        long row = (long)o * inFeatures;
        float* w = j.W + row, m = j.M + row, v = j.V + row;
        float* dyColumn = j.Dy + o, x = j.X;
        int col = 0;
        for (; col + width <= inFeatures; col += width)
        {
            Vector<float> g = default;
            var wv = Vector.Load(w + col);
            float* dyRow = dyColumn, xAt = x + col, dxAt = chain + col;
            for (int t = 0; t < n; t++, dyRow += outFeatures, xAt += inFeatures, dxAt += inFeatures)
            {
                var d = new Vector<float>(*dyRow);
                g = Vector.FusedMultiplyAdd(d, Vector.Load(xAt), g);
                if (chain is null) continue;
                Vector.Store(Vector.FusedMultiplyAdd(d, wv, Vector.Load(dxAt)), dxAt);
            }
            adam.Apply(g, w + col, m + col, v + col);
        }
        for (; col < inFeatures; col++)
        {
            float g = 0;
            float* dyRow = dyColumn, xAt = x + col, dxAt = chain + col;
            for (int t = 0; t < n; t++, dyRow += outFeatures, xAt += inFeatures, dxAt += inFeatures)
            {
                g = MathF.FusedMultiplyAdd(*dyRow, *xAt, g);
                if (chain is null) continue;
                *dxAt = MathF.FusedMultiplyAdd(*dyRow, w[col], *dxAt);
            }
            j.Step.Apply(g, w + col, m + col, v + col);
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
