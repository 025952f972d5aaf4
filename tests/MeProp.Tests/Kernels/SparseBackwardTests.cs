using MeProp.Kernels;
using MeProp.Sparsity;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Kernels;

/// <summary>
/// SparseBackward kernels against their float64 twin, <see cref="SparseBackwardReference"/>, on random
/// kept entries (the twin itself is checked against a dense im2col/col2im product below). Outputs start
/// from random values, since the kernels add into them.
/// Tolerance: |diff| &lt;= 1e-6·(T + 1) + 1e-6·|expected|, T a bound on the terms summed into one output:
/// float32 fused multiply-adds drift about eps·(partial sum) per term, and a wrong or missing entry
/// is off by about |value·x| (0.01 to 1 here).
/// </summary>
public class SparseBackwardTests
{
    private static double Tolerance(int terms) => 1e-6 * (terms + 1);

    /// <summary>
    /// Random kept entries: each unit keeps a random subset of positions (empty and full units
    /// included), ascending; capacity larger than any count so a wrong unit stride reads garbage.
    /// </summary>
    private static SparseGradient RandomSparse(Rng rng, int units, int positions)
    {
        var counts = new int[units];
        for (int u = 0; u < units; u++)
            counts[u] = (u % 5) switch { 0 => 0, 1 => positions, _ => rng.NextInt(positions + 1) };
        int capacity = counts.Max() + 3;
        var g = new SparseGradient();
        g.Reset(units, positions, capacity);
        Array.Fill(g.Positions, -1);
        Array.Fill(g.Values, float.NaN);
        var order = new int[positions];
        for (int u = 0; u < units; u++)
        {
            for (int i = 0; i < positions; i++) order[i] = i;
            rng.Shuffle(order);
            var kept = order[..counts[u]];
            Array.Sort(kept);
            for (int e = 0; e < kept.Length; e++)
            {
                g.Positions[u * capacity + e] = kept[e];
                g.Values[u * capacity + e] = rng.NextUniform(-1f, 1f);
            }
            g.Counts[u] = counts[u];
        }
        return g;
    }

    public static TheoryData<int, int, int> RowShapes => new()
    {
        // units, positions, row length K
        { 1, 1, 1 }, { 3, 5, 7 }, { 7, 13, 16 }, { 5, 9, 17 }, { 11, 4, 33 }, { 4, 40, 75 }, { 6, 1, 8 }, { 1, 30, 3 },
    };

    [Theory]
    [MemberData(nameof(RowShapes))]
    public void WeightGradientMatchesReference(int units, int positions, int k)
    {
        var rng = new Rng((ulong)(units * 1000 + positions * 10 + k));
        var g = RandomSparse(rng, units, positions);
        var x = TestData.Uniform(rng, positions * k);
        var dW0 = TestData.Uniform(rng, units * k);
        var db0 = TestData.Uniform(rng, units);
        var dWExpected = (float[])dW0.Clone();
        var dbExpected = (float[])db0.Clone();
        SparseBackwardReference.WeightGradient(g, x, k, dWExpected, dbExpected);

        float[]? first = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            var dW = (float[])dW0.Clone();
            var db = (float[])db0.Clone();
            SparseBackward.WeightGradient(g, x, k, dW, db, pool);
            TestData.AssertClose(dWExpected, dW, Tolerance(positions), 1e-6, $"dW threads {threads}");
            TestData.AssertClose(dbExpected, db, Tolerance(positions), 1e-6, $"db threads {threads}");
            var both = dW.Concat(db).ToArray();
            if (first is null) first = both;
            else Assert.Equal(first, both);
        }
    }

    [Theory]
    [MemberData(nameof(RowShapes))]
    public void RowInputGradientMatchesReference(int units, int positions, int k)
    {
        var rng = new Rng((ulong)(units * 7 + positions * 1000 + k));
        var g = RandomSparse(rng, units, positions);
        var w = TestData.Uniform(rng, units * k);
        var dx0 = TestData.Uniform(rng, positions * k);
        var expected = (float[])dx0.Clone();
        SparseBackwardReference.RowInputGradient(g, w, k, expected);

        float[]? first = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            var dx = (float[])dx0.Clone();
            SparseBackward.RowInputGradient(g, w, k, dx, pool);
            TestData.AssertClose(expected, dx, Tolerance(units), 1e-6, $"dx threads {threads}");
            if (first is null) first = dx;
            else Assert.Equal(first, dx);
        }
    }

    public static TheoryData<int, int, int, int, int, int, int, int> ConvShapes => new()
    {
        // N, C, H, W, units, kernel, stride, padding
        { 1, 1, 1, 1, 1, 1, 1, 0 },
        { 2, 3, 7, 7, 4, 3, 1, 1 },
        { 3, 2, 9, 8, 5, 3, 2, 0 },
        { 2, 17, 6, 5, 3, 5, 1, 2 },
        { 1, 8, 11, 9, 6, 3, 2, 2 },
        { 3, 16, 5, 7, 2, 3, 2, 1 },
        { 2, 33, 4, 4, 3, 1, 1, 0 },
        { 4, 5, 10, 10, 7, 5, 2, 2 },
        { 2, 1, 12, 13, 9, 5, 1, 0 },
        { 1, 4, 3, 3, 2, 3, 1, 2 },
        // conv1's geometry (1 channel: kernel rows of 5 values read as whole vectors), and planes and
        // rows of 41 positions, where the decoding's float quotients come out one low and are corrected.
        { 10, 1, 28, 28, 4, 5, 1, 2 },
        { 3, 2, 1, 41, 3, 1, 1, 0 },
        { 2, 3, 2, 41, 4, 3, 1, 1 },
        // Kernel rows of 6, 7 and 8 values (gathered a patch at a time up to 8 values and 8 rows).
        { 2, 3, 6, 6, 3, 2, 2, 0 },
        { 3, 1, 10, 11, 4, 7, 2, 3 },
        { 2, 2, 9, 9, 5, 4, 1, 1 },
        { 2, 1, 9, 10, 3, 8, 1, 1 },
        // conv2's geometry (kernel rows of 160 values: a block of eight vectors and one of two), and rows
        // of 185 = 128 + 32 + 16 + 9 values, every step of the input gradient's scatter.
        { 10, 32, 14, 14, 6, 5, 1, 2 },
        { 2, 37, 6, 7, 3, 5, 1, 2 },
    };

    /// <summary>
    /// Terms summed into one output at most: a unit's entries into its dW and db, and into a dx pixel
    /// every unit's output positions whose window covers it (ceil(K/S) per axis).
    /// </summary>
    private static (int Weight, int Input) TermBounds(SparseGradient g, ConvGeometry geometry)
    {
        int windows = (geometry.KH + geometry.Stride - 1) / geometry.Stride * ((geometry.KW + geometry.Stride - 1) / geometry.Stride);
        return (g.Counts.Take(g.Units).Max(), g.Units * windows);
    }

    [Theory]
    [MemberData(nameof(ConvShapes))]
    public void ConvInputGradientMatchesReference(int n, int c, int h, int w, int units, int kernel, int stride, int padding)
    {
        var geometry = new ConvGeometry(n, c, h, w, kernel, kernel, stride, padding);
        var rng = new Rng((ulong)(n * 1_000_003 + c * 10007 + h * 101 + w * 11 + units * 7 + kernel * 3 + stride + padding));
        var g = RandomSparse(rng, units, geometry.Positions);
        var weightHwc = TestData.Uniform(rng, units * kernel * kernel * c);
        var xPadded = new float[SparseBackward.PaddedLength(geometry)];
        var expected = new float[n * c * h * w];
        SparseBackwardReference.ConvGradients(g, geometry, xPadded, new float[units * geometry.PatchLength], new float[units], weightHwc, expected);
        var bounds = TermBounds(g, geometry);

        float[]? first = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            // dx is overwritten and the scratch reused, so both start full of stale values.
            var dx = TestData.Uniform(rng, n * c * h * w);
            var scratch = TestData.Uniform(rng, SparseBackward.ScratchLength(geometry, threads));
            SparseBackward.ConvInputGradient(g, geometry, weightHwc, dx, scratch, pool);
            TestData.AssertClose(expected, dx, Tolerance(bounds.Input), 1e-6, $"dx alone, threads {threads}");
            var dxWithWeight = TestData.Uniform(rng, n * c * h * w);
            SparseBackward.ConvGradients(g, geometry, xPadded, new float[units * geometry.PatchLength], new float[units], weightHwc, dxWithWeight, scratch, pool);
            Assert.Equal(dx, dxWithWeight);
            if (first is null) first = dx;
            else Assert.Equal(first, dx);
        }
    }

    [Theory]
    [MemberData(nameof(ConvShapes))]
    public void ConvWeightGradientMatchesReference(int n, int c, int h, int w, int units, int kernel, int stride, int padding)
    {
        var geometry = new ConvGeometry(n, c, h, w, kernel, kernel, stride, padding);
        var rng = new Rng((ulong)(n * 7_000_003 + c * 1009 + h * 131 + w * 17 + units * 5 + kernel * 3 + stride + padding));
        var g = RandomSparse(rng, units, geometry.Positions);
        var xPadded = Pad(geometry, TestData.Uniform(rng, n * h * w * c));
        var dw0 = TestData.Uniform(rng, units * c * kernel * kernel);
        var db0 = TestData.Uniform(rng, units);
        var dwExpected = (float[])dw0.Clone();
        var dbExpected = (float[])db0.Clone();
        SparseBackwardReference.ConvGradients(g, geometry, xPadded, dwExpected, dbExpected, [], []);
        var bounds = TermBounds(g, geometry);

        float[]? first = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            var dw = (float[])dw0.Clone();
            var db = (float[])db0.Clone();
            SparseBackward.ConvGradients(g, geometry, xPadded, dw, db, [], [], [], pool);
            TestData.AssertClose(dwExpected, dw, Tolerance(bounds.Weight), 1e-6, $"dW threads {threads}");
            TestData.AssertClose(dbExpected, db, Tolerance(bounds.Weight), 1e-6, $"db threads {threads}");
            if (first is null) first = dw;
            else Assert.Equal(first, dw);
            // With the input gradient in the same run, the weight gradient is the same to the bit.
            var dwBoth = (float[])dw0.Clone();
            SparseBackward.ConvGradients(g, geometry, xPadded, dwBoth, (float[])db0.Clone(), new float[units * geometry.PatchLength],
                new float[n * c * h * w], new float[SparseBackward.ScratchLength(geometry, threads)], pool);
            Assert.Equal(dw, dwBoth);
        }
    }

    /// <summary>[N, H, W, C] into the kernels' zero-bordered [N, H+2P, W+2P, C].</summary>
    private static float[] Pad(ConvGeometry g, float[] nhwc)
    {
        int ph = g.H + 2 * g.Padding, pw = g.W + 2 * g.Padding;
        var padded = new float[SparseBackward.PaddedLength(g)];
        // The slack past the batch may be read, never used.
        padded.AsSpan(g.N * ph * pw * g.C).Fill(float.NaN);
        for (int i = 0; i < g.N; i++)
            for (int y = 0; y < g.H; y++)
                for (int x = 0; x < g.W; x++)
                    for (int ch = 0; ch < g.C; ch++)
                        padded[((i * ph + y + g.Padding) * pw + x + g.Padding) * g.C + ch] = nhwc[((i * g.H + y) * g.W + x) * g.C + ch];
        return padded;
    }

    [Theory]
    [InlineData(2, 3, 9, 7, 5, 3, 2, 1)]
    [InlineData(3, 4, 6, 6, 3, 5, 1, 2)]
    public void ReferenceAndKernelAgreeWithDenseIm2ColProducts(int n, int c, int h, int w, int units, int kernel, int stride, int padding)
    {
        // An independent oracle for the twin and the kernel: with the kept entries as dense [P, U] rows D
        // and the patch matrix X = im2col(x) [P, C·KH·KW], dW = Dᵀ · X and dx = col2im(D · W).
        var geometry = new ConvGeometry(n, c, h, w, kernel, kernel, stride, padding);
        int k = geometry.PatchLength, positions = geometry.Positions, taps = kernel * kernel;
        var rng = new Rng((ulong)(n * 31 + c * 7 + kernel));
        var g = RandomSparse(rng, units, positions);
        var weight = TestData.Uniform(rng, units * k);              // [U, C, KH, KW]
        var xNhwc = TestData.Uniform(rng, n * h * w * c);
        var weightHwc = new float[units * k];                       // [U, KH, KW, C]
        for (int u = 0; u < units; u++)
            for (int ch = 0; ch < c; ch++)
                for (int q = 0; q < taps; q++)
                    weightHwc[(u * taps + q) * c + ch] = weight[(u * c + ch) * taps + q];
        var xNchw = new float[xNhwc.Length];
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < c; ch++)
                for (int p = 0; p < h * w; p++)
                    xNchw[(i * c + ch) * h * w + p] = xNhwc[(i * h * w + p) * c + ch];
        var dense = g.ToDenseRows();
        var cols = new float[positions * k];
        Im2ColReference.Forward(geometry, xNchw, cols);
        var dwDense = new float[units * k];
        GemmReference.Multiply(true, false, units, k, positions, dense, units, cols, k, dwDense, k, accumulate: false);
        var dcols = new float[positions * k];
        GemmReference.Multiply(false, false, positions, k, units, dense, units, weight, k, dcols, k, accumulate: false);
        var dxDense = new float[n * c * h * w];
        Im2ColReference.Backward(geometry, dcols, dxDense);

        var xPadded = Pad(geometry, xNhwc);
        var (dwTwin, dbTwin, dxTwin) = (new float[units * k], new float[units], new float[dxDense.Length]);
        SparseBackwardReference.ConvGradients(g, geometry, xPadded, dwTwin, dbTwin, weightHwc, dxTwin);
        TestData.AssertClose(dwDense, dwTwin, 1e-5, 1e-5, "twin dW vs dense product");
        TestData.AssertClose(dxDense, dxTwin, 1e-5, 1e-5, "twin dx vs col2im");
        AssertColumnSums(dense, positions, units, dbTwin);

        using var pool = new WorkerPool(2);
        var (dw, db, dx) = (new float[units * k], new float[units], new float[dxDense.Length]);
        SparseBackward.ConvGradients(g, geometry, xPadded, dw, db, weightHwc, dx, new float[SparseBackward.ScratchLength(geometry, pool.ThreadCount)], pool);
        TestData.AssertClose(dwDense, dw, 1e-5, 1e-5, "kernel dW vs dense product");
        TestData.AssertClose(dxDense, dx, 1e-5, 1e-5, "kernel dx vs col2im");
    }

    [Theory]
    [InlineData(4, 9, 13)]
    [InlineData(1, 3, 1)]
    public void RowReferenceAgreesWithDenseProducts(int units, int positions, int k)
    {
        // dW += Dᵀ · X, db += column sums of D, dX += D · W, with D the kept entries as dense [P, U] rows.
        var rng = new Rng((ulong)(units * 100 + positions * 10 + k));
        var g = RandomSparse(rng, units, positions);
        var x = TestData.Uniform(rng, positions * k);
        var w = TestData.Uniform(rng, units * k);
        var dense = g.ToDenseRows();
        var dwDense = new float[units * k];
        GemmReference.Multiply(true, false, units, k, positions, dense, units, x, k, dwDense, k, accumulate: false);
        var dxDense = new float[positions * k];
        GemmReference.Multiply(false, false, positions, k, units, dense, units, w, k, dxDense, k, accumulate: false);
        var (dw, db, dx) = (new float[units * k], new float[units], new float[positions * k]);
        SparseBackwardReference.WeightGradient(g, x, k, dw, db);
        SparseBackwardReference.RowInputGradient(g, w, k, dx);
        TestData.AssertClose(dwDense, dw, 1e-5, 1e-5, "dW");
        TestData.AssertClose(dxDense, dx, 1e-5, 1e-5, "dx");
        AssertColumnSums(dense, positions, units, db);
    }

    /// <summary>db[u] is the sum of column u of the dense [P, U] rows.</summary>
    private static void AssertColumnSums(float[] dense, int positions, int units, float[] db)
    {
        for (int u = 0; u < units; u++)
        {
            double sum = 0;
            for (int p = 0; p < positions; p++) sum += dense[p * units + u];
            Assert.Equal((float)sum, db[u], 1e-5f);
        }
    }

    [Fact]
    public void RejectsTooShortSpans()
    {
        var rng = new Rng(1);
        var g = RandomSparse(rng, 3, 4);
        using var pool = new WorkerPool(1);
        int k = 5;
        Assert.Throws<ArgumentException>(() => SparseBackward.WeightGradient(g, new float[4 * k - 1], k, new float[3 * k], new float[3], pool));
        Assert.Throws<ArgumentException>(() => SparseBackward.WeightGradient(g, new float[4 * k], k, new float[3 * k - 1], new float[3], pool));
        Assert.Throws<ArgumentException>(() => SparseBackward.WeightGradient(g, new float[4 * k], k, new float[3 * k], new float[2], pool));
        Assert.Throws<ArgumentException>(() => SparseBackward.RowInputGradient(g, new float[3 * k - 1], k, new float[4 * k], pool));
        Assert.Throws<ArgumentException>(() => SparseBackward.RowInputGradient(g, new float[3 * k], k, new float[4 * k - 1], pool));
        var geometry = new ConvGeometry(1, 2, 2, 2, 1, 1, 1, 0);
        var conv = RandomSparse(rng, 3, geometry.Positions);
        // Geometry [1, 2, 2, 2], 1x1 kernel: x padded and dx 8 floats, weight and dW 3·2, db 3, scratch 8 a worker.
        Assert.Throws<ArgumentException>(() => SparseBackward.ConvGradients(conv, geometry, new float[7], new float[6], new float[3], [], [], [], pool));
        Assert.Throws<ArgumentException>(() => SparseBackward.ConvGradients(conv, geometry, new float[8], new float[5], new float[3], [], [], [], pool));
        Assert.Throws<ArgumentException>(() => SparseBackward.ConvGradients(conv, geometry, new float[8], new float[6], new float[2], [], [], [], pool));
        Assert.Throws<ArgumentException>(() => SparseBackward.ConvGradients(conv, geometry, new float[8], new float[6], new float[3], new float[5], new float[8], new float[8], pool));
        Assert.Throws<ArgumentException>(() => SparseBackward.ConvGradients(conv, geometry, new float[8], new float[6], new float[3], new float[6], new float[7], new float[8], pool));
        Assert.Throws<ArgumentException>(() => SparseBackward.ConvGradients(conv, geometry, new float[8], new float[6], new float[3], new float[6], new float[8], new float[7], pool));
    }

    [Fact]
    public void ToDenseRowsPlacesEachEntry()
    {
        var g = new SparseGradient();
        g.Reset(units: 2, positionCount: 3, capacity: 4);
        g.Positions[0] = 0; g.Values[0] = 1.5f;
        g.Positions[1] = 2; g.Values[1] = -2f;
        g.Counts[0] = 2;
        g.Positions[4] = 1; g.Values[4] = 3f;
        g.Counts[1] = 1;
        Assert.Equal(3, g.Count);
        // [P, U] rows: (0,0) = 1.5, (2,0) = -2, (1,1) = 3.
        Assert.Equal(new[] { 1.5f, 0f, 0f, 3f, -2f, 0f }, g.ToDenseRows());
    }
}
