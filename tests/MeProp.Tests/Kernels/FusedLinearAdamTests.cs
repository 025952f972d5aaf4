using MeProp.Kernels;
using MeProp.Layers;
using MeProp.Optimizers;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Kernels;

/// <summary>
/// <see cref="FusedLinearAdam"/> against its float64 reference twin, and against the unfused path it
/// replaces (Gemm for dW and dX, then Adam's own pass), on odd shapes: batch 1..11, output features
/// below, at and above the 256-row group (several groups, a row block tail), input features off the
/// vector width, narrow and wide. The unfused comparison is exact: both sum in the same order (see the kernel).
/// </summary>
public class FusedLinearAdamTests
{
    public static IEnumerable<object[]> Shapes()
    {
        // n, out, in
        // The last two: rows of a thousand and more columns ending off the 16-column grid.
        int[][] shapes = [[1, 1, 1], [3, 5, 7], [10, 9, 33], [2, 257, 17], [10, 300, 40], [7, 513, 37], [11, 1024, 19], [4, 6, 100],
            [3, 300, 1043], [10, 40, 2061]];
        foreach (var s in shapes)
            foreach (bool dx in new[] { true, false })
                yield return [s[0], s[1], s[2], dx];
    }

    private sealed class Case
    {
        public required float[] Dy, X, W, M, V;
        public required AdamStep Step;
    }

    /// <summary>Random dY, X, W and moments as after a few steps (v ≥ 0), at step 3 of Adam's default betas and lr 1e-2.</summary>
    private static Case MakeCase(int n, int outFeatures, int inFeatures, ulong seed)
    {
        var rng = new Rng(seed);
        var v = TestData.Uniform(rng, outFeatures * inFeatures, 0f, 0.01f);
        double bias1 = 1 - Math.Pow(0.9, 3), bias2 = 1 - Math.Pow(0.999, 3);
        return new Case
        {
            Dy = TestData.Uniform(rng, n * outFeatures), X = TestData.Uniform(rng, n * inFeatures),
            W = TestData.Uniform(rng, outFeatures * inFeatures), M = TestData.Uniform(rng, outFeatures * inFeatures, -0.1f, 0.1f), V = v,
            Step = new AdamStep(0.9f, 0.999f, (float)(1e-2 / bias1), (float)(1 / Math.Sqrt(bias2)), 1e-8f),
        };
    }

    /// <summary>
    /// Tolerance: dX sums up to 1,024 products of values below 1 in float32 against float64: abs 1e-4 +
    /// rel 1e-4. Weights move by about lr = 1e-2 per step, in a direction set by m/sqrt(v): abs 1e-5 on
    /// values O(1) (a wrong or missing update is off by 1e-3 or more); moments rel 1e-5 + abs 1e-7.
    /// </summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesReference(int n, int outFeatures, int inFeatures, bool inputGradient)
    {
        var c = MakeCase(n, outFeatures, inFeatures, (ulong)(n * 1000 + outFeatures * 10 + inFeatures));
        var (w, m, v) = (c.W.ToArray(), c.M.ToArray(), c.V.ToArray());
        // dX and the scratch start with stale values: the kernel sets dX and its partials, it does not add.
        var dx = TestData.Uniform(new Rng(5), inputGradient ? n * inFeatures : 0);
        using var pool = new WorkerPool(3);
        var scratch = TestData.Uniform(new Rng(6), (int)FusedLinearAdam.ScratchLength(n, outFeatures, inFeatures, inputGradient));
        FusedLinearAdam.Run(c.Dy, c.X, n, outFeatures, inFeatures, w, m, v, c.Step, dx, scratch, pool);

        var (wRef, mRef, vRef) = (c.W.ToArray(), c.M.ToArray(), c.V.ToArray());
        var dxRef = new float[dx.Length];
        FusedLinearAdamReference.Run(c.Dy, c.X, n, outFeatures, inFeatures, wRef, mRef, vRef, c.Step, dxRef);

        TestData.AssertClose(dxRef, dx, 1e-4, 1e-4, "dx");
        TestData.AssertClose(mRef, m, 1e-7, 1e-5, "exp_avg");
        TestData.AssertClose(vRef, v, 1e-7, 1e-5, "exp_avg_sq");
        TestData.AssertClose(wRef, w, 1e-5, 0, "weight");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EqualsGemmThenAdamBitForBit(int n, int outFeatures, int inFeatures, bool inputGradient)
    {
        var c = MakeCase(n, outFeatures, inFeatures, (ulong)(n * 1000 + outFeatures * 10 + inFeatures + 7));
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var compute = new ComputeContext(threads);
            // The unfused path: the products Linear.Backward makes, then Adam's own pass, at step 3 from the same moments.
            var weight = new Parameter("w", outFeatures, inFeatures);
            c.W.CopyTo(weight.Value.Span);
            var adam = new Adam([weight], compute.Pool, 1e-2f);
            var state = adam.State().ToArray();
            c.M.CopyTo(state[0].State.Span);
            c.V.CopyTo(state[1].State.Span);
            adam.RestoreStep(2);
            adam.BeginStep();

            var (w, m, v) = (c.W.ToArray(), c.M.ToArray(), c.V.ToArray());
            var dx = TestData.Uniform(new Rng(5), inputGradient ? n * inFeatures : 0);
            var scratch = TestData.Uniform(new Rng(6), (int)FusedLinearAdam.ScratchLength(n, outFeatures, inFeatures, inputGradient));
            FusedLinearAdam.Run(c.Dy, c.X, n, outFeatures, inFeatures, w, m, v, adam.CurrentStep, dx, scratch, compute.Pool);

            var dxUnfused = new float[dx.Length];
            if (inputGradient)
                compute.Gemm.Multiply(false, false, n, inFeatures, outFeatures, c.Dy, outFeatures, c.W, inFeatures, dxUnfused, inFeatures, false);
            compute.Gemm.Multiply(true, false, outFeatures, inFeatures, n, c.Dy, outFeatures, c.X, inFeatures, weight.Gradient.Span, inFeatures, true);
            adam.FinishStep();

            Assert.True(dxUnfused.AsSpan().SequenceEqual(dx), $"{threads} threads: dx differs");
            Assert.True(weight.Value.Span.SequenceEqual(w), $"{threads} threads: weight differs");
            Assert.True(state[0].State.Span.SequenceEqual(m), $"{threads} threads: exp_avg differs");
            Assert.True(state[1].State.Span.SequenceEqual(v), $"{threads} threads: exp_avg_sq differs");
        }
    }
}
