using MeProp.Kernels;
using MeProp.Sparsity;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Kernels;

/// <summary>
/// SparseBackward kernels against float64 references built on SparseGradient.ToDenseRows() (dense
/// [P, U] rows) with plain loops. Outputs start from random values, since the kernels add into them.
/// Tolerance: |diff| &lt;= 1e-6·(T + 1) + 1e-6·|expected|, T the number of terms summed into one output:
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
        var dense = g.ToDenseRows();

        var dWExpected = new float[units * k];
        var dbExpected = new float[units];
        for (int u = 0; u < units; u++)
        {
            double bias = db0[u];
            for (int p = 0; p < positions; p++) bias += dense[p * units + u];
            dbExpected[u] = (float)bias;
            for (int c = 0; c < k; c++)
            {
                double sum = dW0[u * k + c];
                for (int p = 0; p < positions; p++) sum += (double)dense[p * units + u] * x[p * k + c];
                dWExpected[u * k + c] = (float)sum;
            }
        }

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
        var dense = g.ToDenseRows();

        var expected = new float[positions * k];
        for (int p = 0; p < positions; p++)
            for (int c = 0; c < k; c++)
            {
                double sum = dx0[p * k + c];
                for (int u = 0; u < units; u++) sum += (double)dense[p * units + u] * w[u * k + c];
                expected[p * k + c] = (float)sum;
            }

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

    [Theory]
    [MemberData(nameof(ConvShapes))]
    public void ConvInputGradientMatchesDirectScatter(int n, int c, int h, int w, int units, int kernel, int stride, int padding)
    {
        var geometry = new ConvGeometry(n, c, h, w, kernel, kernel, stride, padding);
        int oh = geometry.OH, ow = geometry.OW;
        var rng = new Rng((ulong)(n * 1_000_003 + c * 10007 + h * 101 + w * 11 + units * 7 + kernel * 3 + stride + padding));
        var g = RandomSparse(rng, units, geometry.Positions);
        var weightHwc = TestData.Uniform(rng, units * kernel * kernel * c);
        var dense = g.ToDenseRows();

        // Direct scatter in float64: dx[n, c, oy·S-P+kh, ox·S-P+kw] += v · W[u, kh, kw, c].
        var sum = new double[n * c * h * w];
        var terms = new int[n * h * w];
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int u = 0; u < units; u++)
                    {
                        double v = dense[((i * oh + oy) * ow + ox) * units + u];
                        if (v == 0) continue;
                        for (int kh = 0; kh < kernel; kh++)
                            for (int kw = 0; kw < kernel; kw++)
                            {
                                int iy = oy * stride - padding + kh, ix = ox * stride - padding + kw;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                terms[(i * h + iy) * w + ix]++;
                                for (int ch = 0; ch < c; ch++)
                                    sum[((i * c + ch) * h + iy) * w + ix] += v * weightHwc[((u * kernel + kh) * kernel + kw) * c + ch];
                            }
                    }
        var expected = sum.Select(v => (float)v).ToArray();
        int maxTerms = terms.Max();

        float[]? first = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            // dx is overwritten and the scratch reused, so both start full of stale values.
            var dx = TestData.Uniform(rng, n * c * h * w);
            var scratch = TestData.Uniform(rng, SparseBackward.ScratchLength(geometry, threads));
            var dw = new float[units * kernel * kernel * c];
            SparseBackward.ConvGradients(g, geometry, new float[SparseBackward.PaddedLength(geometry)], dw, new float[units], weightHwc, dx, scratch, pool);
            TestData.AssertClose(expected, dx, Tolerance(maxTerms), 1e-6, $"dx threads {threads}");
            if (first is null) first = dx;
            else Assert.Equal(first, dx);
        }
    }

    [Theory]
    [MemberData(nameof(ConvShapes))]
    public void ConvWeightGradientMatchesDirectGather(int n, int c, int h, int w, int units, int kernel, int stride, int padding)
    {
        var geometry = new ConvGeometry(n, c, h, w, kernel, kernel, stride, padding);
        int oh = geometry.OH, ow = geometry.OW;
        var rng = new Rng((ulong)(n * 7_000_003 + c * 1009 + h * 131 + w * 17 + units * 5 + kernel * 3 + stride + padding));
        var g = RandomSparse(rng, units, geometry.Positions);
        var xNhwc = TestData.Uniform(rng, n * h * w * c);
        var dw0 = TestData.Uniform(rng, units * c * kernel * kernel);
        var db0 = TestData.Uniform(rng, units);
        var dense = g.ToDenseRows();

        // Direct gather in float64: dW[u, c, kh, kw] += v · x[n, oy·S-P+kh, ox·S-P+kw, c]; db[u] += v.
        var dwSum = dw0.Select(v => (double)v).ToArray();
        var dbSum = db0.Select(v => (double)v).ToArray();
        var terms = new int[units];
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int u = 0; u < units; u++)
                    {
                        double v = dense[((i * oh + oy) * ow + ox) * units + u];
                        if (v == 0) continue;
                        dbSum[u] += v;
                        terms[u]++;
                        for (int kh = 0; kh < kernel; kh++)
                            for (int kw = 0; kw < kernel; kw++)
                            {
                                int iy = oy * stride - padding + kh, ix = ox * stride - padding + kw;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                for (int ch = 0; ch < c; ch++)
                                    dwSum[((u * c + ch) * kernel + kh) * kernel + kw] += v * xNhwc[((i * h + iy) * w + ix) * c + ch];
                            }
                    }
        int maxTerms = terms.Max();
        float[]? first = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            var dw = (float[])dw0.Clone();
            var db = (float[])db0.Clone();
            SparseBackward.ConvGradients(g, geometry, Pad(geometry, xNhwc), dw, db, [], [], [], pool);
            TestData.AssertClose(dwSum.Select(v => (float)v).ToArray(), dw, Tolerance(maxTerms), 1e-6, $"dW threads {threads}");
            TestData.AssertClose(dbSum.Select(v => (float)v).ToArray(), db, Tolerance(maxTerms), 1e-6, $"db threads {threads}");
            if (first is null) first = dw;
            else Assert.Equal(first, dw);
            // With the input gradient in the same run, the weight gradient is the same to the bit.
            var dwBoth = (float[])dw0.Clone();
            SparseBackward.ConvGradients(g, geometry, Pad(geometry, xNhwc), dwBoth, (float[])db0.Clone(), new float[units * geometry.PatchLength],
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

    [Fact]
    public void ConvInputGradientAgreesWithCol2ImOfDenseProduct()
    {
        // A second, independent oracle: dcols = dense rows · W (weight as [U, C·KH·KW]) then col2im.
        var geometry = new ConvGeometry(2, 3, 9, 7, 3, 3, 2, 1);
        int units = 5, k = geometry.PatchLength, positions = geometry.Positions;
        var rng = new Rng(99);
        var g = RandomSparse(rng, units, positions);
        var weight = TestData.Uniform(rng, units * k);               // [U, C, KH, KW]
        var weightHwc = new float[units * k];                       // [U, KH, KW, C]
        for (int u = 0; u < units; u++)
            for (int ch = 0; ch < geometry.C; ch++)
                for (int q = 0; q < geometry.KH * geometry.KW; q++)
                    weightHwc[(u * geometry.KH * geometry.KW + q) * geometry.C + ch] = weight[(u * geometry.C + ch) * geometry.KH * geometry.KW + q];
        var dense = g.ToDenseRows();
        var dcols = new float[positions * k];
        for (int p = 0; p < positions; p++)
            for (int j = 0; j < k; j++)
            {
                double s = 0;
                for (int u = 0; u < units; u++) s += (double)dense[p * units + u] * weight[u * k + j];
                dcols[p * k + j] = (float)s;
            }
        using var pool = new WorkerPool(2);
        var nchw = new float[geometry.N * geometry.C * geometry.H * geometry.W];
        Im2Col.Backward(geometry, dcols, nchw, pool);
        var dx = new float[nchw.Length];
        SparseBackward.ConvGradients(g, geometry, new float[SparseBackward.PaddedLength(geometry)], new float[units * k], new float[units],
            weightHwc, dx, new float[SparseBackward.ScratchLength(geometry, pool.ThreadCount)], pool);
        TestData.AssertClose(nchw, dx, 1e-5, 1e-5, "sparse dx vs col2im");
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
