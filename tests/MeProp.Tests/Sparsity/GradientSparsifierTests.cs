using MeProp.Kernels;
using MeProp.Sparsity;
using MeProp.Tensors;
using MeProp.Threading;
using static MeProp.Tests.Sparsity.SparseTestData;

namespace MeProp.Tests.Sparsity;

/// <summary>
/// GradientSparsifier against reference selections built from TopKSelectionReference. Selections and
/// kept values are compared exactly: the data are dyadic (exact ties, exact sums), or, where a
/// running average with decay 0.9 is involved, the reference repeats the float32 formula.
/// </summary>
public class GradientSparsifierTests
{
    /// <summary>[N, U, P] conv gradient shapes, odd sizes included.</summary>
    public static TheoryData<int, int, int> ConvShapes => new()
    {
        { 1, 1, 1 }, { 3, 5, 7 }, { 2, 3, 25 }, { 5, 4, 49 }, { 4, 7, 9 }, { 1, 6, 13 }, { 7, 2, 1 }, { 3, 9, 64 },
        // The network's planes (conv2's 14x14, conv1's 28x28 + 1), positions far into the pool; and a
        // plane whose float quotient position / plane rounds below a row's first position (41).
        { 10, 3, 196 }, { 3, 2, 785 }, { 4, 3, 41 },
    };

    /// <summary>[N, U] linear gradient shapes.</summary>
    public static TheoryData<int, int> LinearShapes => new()
    {
        { 1, 1 }, { 1, 10 }, { 5, 1 }, { 7, 13 }, { 33, 50 }, { 4, 3 }, { 16, 17 },
    };

    private static readonly double[] Ratios = [0.01, 0.1, 0.3, 0.5, 0.99, 1.0];
    private static readonly int[] ThreadCounts = [1, 3];

    private static GradientSparsifier Conv(SelectionPolicy policy, double ratio, double decay = 0, DecayShape shape = DecayShape.Full, ulong seed = 1) =>
        new("conv", new MePropOptions { Ratio = ratio, Decay = decay, DecayShape = shape, Selection = policy }, convolutional: true, seed);

    private static GradientSparsifier Dense(SelectionPolicy policy, double ratio, double decay = 0, DecayShape shape = DecayShape.Full, ulong seed = 1) =>
        new("fc", new MePropOptions { Ratio = ratio, Decay = decay, DecayShape = shape, Selection = policy }, convolutional: false, seed);

    /// <summary>Adds selection <paramref name="g"/>'s counts to <paramref name="counters"/> and checks the sums so far.</summary>
    private static void AssertCounters(ref SparsityCounters counters, SparseGradient g, long total, long nonZero, long kept, string what)
    {
        counters.Add(g);
        Assert.True(counters.Total == total, $"{what}: Total {counters.Total}, expected {total}");
        Assert.True(counters.NonZero == nonZero, $"{what}: NonZero {counters.NonZero}, expected {nonZero}");
        Assert.True(counters.Kept == kept, $"{what}: Kept {counters.Kept}, expected {kept}");
    }

    [Theory]
    [MemberData(nameof(ConvShapes))]
    public void PerChannelMatchesReference(int n, int units, int plane)
    {
        var rng = new Rng((ulong)(n * 10007 + units * 101 + plane));
        foreach (int threads in ThreadCounts)
        {
            using var pool = new WorkerPool(threads);
            foreach (double ratio in Ratios)
            {
                var s = Conv(SelectionPolicy.PerChannel, ratio);
                long total = 0, nonZero = 0, kept = 0;
                var counters = new SparsityCounters();
                for (int step = 0; step < 3; step++)
                {
                    var dy = Dyadic(rng, n * units * plane);
                    int k = s.Options.KeepCount(n * plane);
                    var g = s.Sparsify(dy, n, units, plane, pool);
                    string what = $"[{n},{units},{plane}] ratio {ratio} threads {threads} step {step}";
                    AssertEntries(PerChannel(dy, Abs(dy), n, units, plane, k), g, n * plane, what);
                    Assert.Equal((long)units * k, g.Selected);
                    total += dy.Length; nonZero += dy.Count(v => v != 0); kept += g.Selected;
                    AssertCounters(ref counters, g, total, nonZero, kept, what);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(ConvShapes))]
    public void PerExampleChannelMatchesReference(int n, int units, int plane)
    {
        var rng = new Rng((ulong)(n * 7 + units * 1009 + plane * 3));
        foreach (int threads in ThreadCounts)
        {
            using var pool = new WorkerPool(threads);
            foreach (double ratio in Ratios)
            {
                var s = Conv(SelectionPolicy.PerExampleChannel, ratio);
                long total = 0, nonZero = 0, kept = 0;
                var counters = new SparsityCounters();
                for (int step = 0; step < 2; step++)
                {
                    var dy = Dyadic(rng, n * units * plane);
                    int k = s.Options.KeepCount(plane);
                    var g = s.Sparsify(dy, n, units, plane, pool);
                    string what = $"[{n},{units},{plane}] ratio {ratio} threads {threads} step {step}";
                    AssertEntries(PerExampleChannel(dy, Abs(dy), n, units, plane, k), g, n * plane, what);
                    Assert.Equal((long)n * units * k, g.Selected);
                    total += dy.Length; nonZero += dy.Count(v => v != 0); kept += g.Selected;
                    AssertCounters(ref counters, g, total, nonZero, kept, what);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(LinearShapes))]
    public void LinearPerExampleMatchesReference(int n, int units)
    {
        var rng = new Rng((ulong)(n * 31 + units));
        foreach (int threads in ThreadCounts)
        {
            using var pool = new WorkerPool(threads);
            foreach (double ratio in Ratios)
            {
                var s = Dense(SelectionPolicy.PerExample, ratio);
                long total = 0, nonZero = 0, kept = 0;
                var counters = new SparsityCounters();
                for (int step = 0; step < 2; step++)
                {
                    var dy = Dyadic(rng, n * units);
                    int k = s.Options.KeepCount(units);
                    var g = s.Sparsify(dy, n, units, 1, pool);
                    string what = $"[{n},{units}] ratio {ratio} threads {threads} step {step}";
                    AssertEntries(PerExample(dy, Abs(dy), n, units, k), g, n, what);
                    Assert.Equal((long)n * k, g.Selected);
                    total += dy.Length; nonZero += dy.Count(v => v != 0); kept += g.Selected;
                    AssertCounters(ref counters, g, total, nonZero, kept, what);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(LinearShapes))]
    public void LinearUnifiedMatchesReference(int n, int units)
    {
        var rng = new Rng((ulong)(n * 17 + units * 5));
        foreach (int threads in ThreadCounts)
        {
            using var pool = new WorkerPool(threads);
            foreach (double ratio in Ratios)
            {
                var s = Dense(SelectionPolicy.Unified, ratio);
                long total = 0, nonZero = 0, kept = 0;
                var counters = new SparsityCounters();
                for (int step = 0; step < 2; step++)
                {
                    var dy = Dyadic(rng, n * units);
                    int k = s.Options.KeepCount(units);
                    var g = s.Sparsify(dy, n, units, 1, pool);
                    string what = $"[{n},{units}] ratio {ratio} threads {threads} step {step}";
                    AssertEntries(SameUnitsForEveryExample(dy, SumOverBatch(Abs(dy), n, units), n, units, k), g, n, what);
                    Assert.Equal((long)n * k, g.Selected);
                    total += dy.Length; nonZero += dy.Count(v => v != 0); kept += g.Selected;
                    AssertCounters(ref counters, g, total, nonZero, kept, what);
                }
            }
        }
    }

    [Fact]
    public void UnifiedScoresBySummedMagnitudeNotByLargestEntry()
    {
        // Hand-made: unit 0 holds the single largest |value| (1.0 in example 0); unit 1 has the
        // largest sum (0.5 + 0.5 + 0.5 = 1.5 > 1.0 + 0 + 0). Unified with k = 1 must pick unit 1 for all.
        float[] dy =
        [
            1.0f, -0.5f, 0.25f,
            0.0f, 0.5f, 0.0f,
            0.0f, -0.5f, 0.25f,
        ];
        using var pool = new WorkerPool(1);
        var s = Dense(SelectionPolicy.Unified, ratio: 0.3);
        var g = s.Sparsify(dy, 3, 3, 1, pool);
        var expected = EmptyUnits(3);
        expected[1].AddRange([(0, -0.5f), (1, 0.5f), (2, -0.5f)]);
        AssertEntries(expected, g, 3, "unified k=1");
    }

    [Fact]
    public void LinearPerChannelPoolsOverTheBatch()
    {
        // A linear layer accepts per-channel: one pool per output over the N examples.
        var rng = new Rng(77);
        using var pool = new WorkerPool(3);
        int n = 9, units = 6;
        var s = Dense(SelectionPolicy.PerChannel, 0.3);
        var dy = Dyadic(rng, n * units);
        var g = s.Sparsify(dy, n, units, 1, pool);
        AssertEntries(PerChannel(dy, Abs(dy), n, units, 1, s.Options.KeepCount(n)), g, n, "linear per-channel");
    }

    [Fact]
    public void ConvSelectionDoesNotDependOnThreadCount()
    {
        // Per-channel scratch is per worker: the same sparsifier used with several pools, largest first.
        // Two workers sharing one scratch buffer race, so a failure here may show only on some runs;
        // 50 repeats per pool made the old race (scratch picked by u % 3 on a pool of 2) fail 6 runs of 6.
        var rng = new Rng(404);
        int n = 6, units = 11, plane = 100;
        var s = Conv(SelectionPolicy.PerChannel, 0.1);
        foreach (int threads in new[] { 3, 2, 1, 2, 3, 2 })
        {
            using var pool = new WorkerPool(threads);
            for (int repeat = 0; repeat < 50; repeat++)
            {
                var dy = TestData.Uniform(rng, n * units * plane);
                var g = s.Sparsify(dy, n, units, plane, pool);
                AssertEntries(PerChannel(dy, Abs(dy), n, units, plane, s.Options.KeepCount(n * plane)), g, n * plane, $"threads {threads} repeat {repeat}");
            }
        }
    }

    [Fact]
    public void PerChannelStaysExactWhenTheGradientScaleJumps()
    {
        // Each step's candidates are cut at 0.7 of the previous step's k-th score: a gradient a thousand
        // times smaller leaves fewer than k candidates (the whole pool is ranked), one a thousand times
        // larger makes every entry a candidate, an all-zero one and a mostly-zero one (fewer non-zero
        // entries than k) take the zero-floor path, and decay keeps old scores alive through them (at
        // decay 1/4 the all-zero step leaves fewer than k candidates, so the running averages are ranked).
        var rng = new Rng(77);
        int n = 3, units = 5, plane = 49;
        float[] scales = [1, 1f / 1024, 1024, 0, 1, 1]; // powers of two keep the running average exact
        foreach (double decay in new[] { 0.0, 0.5, 0.25 })
            foreach (int threads in ThreadCounts)
            {
                using var pool = new WorkerPool(threads);
                var s = Conv(SelectionPolicy.PerChannel, 0.1, decay);
                var run = new float[n * units * plane];
                for (int step = 0; step < scales.Length; step++)
                {
                    var dy = Dyadic(rng, n * units * plane);
                    for (int i = 0; i < dy.Length; i++) dy[i] *= scales[step];
                    if (step == scales.Length - 1)
                        for (int i = 0; i < dy.Length; i++) if (i % 23 != 0) dy[i] = 0;
                    for (int i = 0; i < run.Length; i++) run[i] = decay == 0 ? MathF.Abs(dy[i]) : (float)decay * run[i] + (1 - (float)decay) * MathF.Abs(dy[i]);
                    var g = s.Sparsify(dy, n, units, plane, pool);
                    AssertEntries(PerChannel(dy, run, n, units, plane, s.Options.KeepCount(n * plane)), g, n * plane, $"decay {decay} threads {threads} step {step}");
                }
            }
    }

    [Fact]
    public void PoolsOfDifferentSizesOneAfterAnother()
    {
        // Buffers are grown once and reused: a large batch, a small one, and a large one again.
        var rng = new Rng(8);
        using var pool = new WorkerPool(3);
        var s = Conv(SelectionPolicy.PerChannel, 0.2);
        foreach (var (n, units, plane) in new[] { (2, 3, 4), (6, 5, 49), (1, 2, 9), (3, 8, 100), (2, 3, 4) })
        {
            var dy = Dyadic(rng, n * units * plane);
            var g = s.Sparsify(dy, n, units, plane, pool);
            AssertEntries(PerChannel(dy, Abs(dy), n, units, plane, s.Options.KeepCount(n * plane)), g, n * plane, $"[{n},{units},{plane}]");
        }
    }

    [Fact]
    public void RejectsTooShortGradient()
    {
        using var pool = new WorkerPool(1);
        var s = Conv(SelectionPolicy.PerChannel, 0.1);
        Assert.Throws<ArgumentException>(() => s.Sparsify(new float[2 * 3 * 4 - 1], 2, 3, 4, pool));
    }

    // ---- random-k baseline ----

    [Fact]
    public void RandomConvKeepsKDistinctPositionsPerChannel()
    {
        var rng = new Rng(3);
        using var pool = new WorkerPool(3);
        foreach (var (n, units, plane) in new[] { (3, 5, 7), (1, 1, 1), (4, 2, 25) })
            foreach (double ratio in new[] { 0.1, 0.5, 1.0 })
            {
                var s = Conv(SelectionPolicy.Random, ratio, seed: 42);
                // No zeros in dy, so every drawn position is stored (zero-valued ones are only counted).
                var dy = TestData.Uniform(rng, n * units * plane);
                var g = s.Sparsify(dy, n, units, plane, pool);
                int k = s.Options.KeepCount(n * plane);
                Assert.Equal(n * plane, g.PositionCount);
                var entries = ByUnit(g);
                for (int u = 0; u < units; u++)
                {
                    Assert.Equal(k, entries[u].Count);
                    for (int e = 0; e < k; e++)
                    {
                        var (position, value) = entries[u][e];
                        Assert.InRange(position, 0, n * plane - 1);
                        if (e > 0) Assert.True(entries[u][e - 1].Position < position, "positions strictly ascending (distinct)");
                        Assert.Equal(dy[(position / plane * units + u) * plane + position % plane], value);
                    }
                }
                var counters = new SparsityCounters();
                counters.Add(g);
                Assert.Equal(new SparsityCounters { Total = dy.Length, NonZero = dy.Count(v => v != 0), Kept = (long)units * k }, counters);
            }
    }

    [Fact]
    public void RandomLinearKeepsKDistinctUnitsPerExample()
    {
        var rng = new Rng(4);
        using var pool = new WorkerPool(3);
        int n = 9, units = 20;
        var s = Dense(SelectionPolicy.Random, 0.25, seed: 42);
        var dy = TestData.Uniform(rng, n * units);
        var g = s.Sparsify(dy, n, units, 1, pool);
        int k = s.Options.KeepCount(units);
        var perExample = new int[n];
        foreach (var (u, entries) in ByUnit(g).Select((e, u) => (u, e)))
            for (int e = 0; e < entries.Count; e++)
            {
                var (example, value) = entries[e];
                if (e > 0) Assert.True(entries[e - 1].Position < example, "examples ascending within a unit");
                Assert.Equal(dy[example * units + u], value);
                perExample[example]++;
            }
        Assert.All(perExample, count => Assert.Equal(k, count));
    }

    private static List<(int, float)>[] RandomDraw(ulong seed, float[] dy, int n, int units, int plane, int calls)
    {
        using var pool = new WorkerPool(2);
        var s = Conv(SelectionPolicy.Random, 0.2, seed: seed);
        List<(int, float)>[] last = [];
        for (int c = 0; c < calls; c++) last = ByUnit(s.Sparsify(dy, n, units, plane, pool));
        return last;
    }

    [Fact]
    public void RandomIsDeterministicForASeedAndDiffersForAnother()
    {
        var dy = Dyadic(new Rng(9), 3 * 4 * 20);
        var a = RandomDraw(100, dy, 3, 4, 20, 1);
        var b = RandomDraw(100, dy, 3, 4, 20, 1);
        var other = RandomDraw(101, dy, 3, 4, 20, 1);
        var secondCall = RandomDraw(100, dy, 3, 4, 20, 2);
        for (int u = 0; u < 4; u++) Assert.Equal(a[u], b[u]);
        // 12 of 60 positions per unit: two independent draws agree on all four units with probability ~1e-50.
        Assert.False(Enumerable.Range(0, 4).All(u => a[u].SequenceEqual(other[u])), "another seed gave the same draw");
        Assert.False(Enumerable.Range(0, 4).All(u => a[u].SequenceEqual(secondCall[u])), "the second call repeated the first draw");
    }

    [Fact]
    public void RandomPositionsAreUniform()
    {
        // 10 positions, k = 3, 4000 draws: each position is kept 1200 times on average (sd about 29);
        // a band of +-150 (5 sd) fails a draw that favours low or high indices.
        using var pool = new WorkerPool(1);
        var s = Conv(SelectionPolicy.Random, 0.3, seed: 5);
        var dy = Enumerable.Range(0, 10).Select(i => (float)(i + 1)).ToArray();
        var hits = new int[10];
        for (int draw = 0; draw < 4000; draw++)
            foreach (var (position, _) in ByUnit(s.Sparsify(dy, 2, 1, 5, pool))[0]) hits[position]++;
        Assert.All(hits, h => Assert.InRange(h, 1050, 1350));
    }

    [Theory]
    [InlineData(SelectionPolicy.PerChannel, true, 0.6)]
    [InlineData(SelectionPolicy.PerExampleChannel, true, 0.0)]
    [InlineData(SelectionPolicy.Random, true, 0.0)]
    [InlineData(SelectionPolicy.PerExample, false, 0.6)]
    [InlineData(SelectionPolicy.Unified, false, 0.0)]
    public void ZeroMeanShiftsEachUnitsKeptValuesByTheirMean(SelectionPolicy policy, bool convolutional, double decay)
    {
        int n = 3, units = 5, plane = convolutional ? 25 : 1;
        var rng = new Rng(21);
        using var pool = new WorkerPool(2);
        var options = new MePropOptions { Ratio = 0.3, Decay = decay, Selection = policy };
        var plain = new GradientSparsifier("layer", options, convolutional, seed: 4);
        var shifted = new GradientSparsifier("layer", options with { ZeroMean = true }, convolutional, seed: 4);
        for (int step = 0; step < 2; step++)
        {
            var dy = TestData.Uniform(rng, n * units * plane);
            var expected = ByUnit(plain.Sparsify(dy, n, units, plane, pool));
            var actual = ByUnit(shifted.Sparsify(dy, n, units, plane, pool));
            bool moved = false;
            for (int u = 0; u < units; u++)
            {
                // The same entries, each moved by the unit's mean (summed in double, as the sparsifier does).
                Assert.Equal(expected[u].Select(e => e.Position), actual[u].Select(e => e.Position));
                if (expected[u].Count == 0) continue;
                float mean = (float)(expected[u].Sum(e => (double)e.Value) / expected[u].Count);
                Assert.Equal(expected[u].Select(e => e.Value - mean), actual[u].Select(e => e.Value));
                Assert.InRange(actual[u].Sum(e => (double)e.Value), -1e-5, 1e-5);
                moved |= Math.Abs(mean) > 1e-3;
            }
            Assert.True(moved, "every unit's kept values already had mean ~0: the test proves nothing");
        }
    }

    [Fact]
    public void ZeroMeanLeavesRatioOneDense()
    {
        int n = 3, units = 4, plane = 25;
        using var pool = new WorkerPool(2);
        var dy = TestData.Uniform(new Rng(22), n * units * plane);
        var options = new MePropOptions { Ratio = 1, Selection = SelectionPolicy.PerChannel };
        var plain = ByUnit(new GradientSparsifier("conv", options, convolutional: true, seed: 1).Sparsify(dy, n, units, plane, pool));
        var shifted = ByUnit(new GradientSparsifier("conv", options with { ZeroMean = true }, convolutional: true, seed: 1).Sparsify(dy, n, units, plane, pool));
        for (int u = 0; u < units; u++) Assert.Equal(plain[u], shifted[u]);
        Assert.True(Math.Abs(plain[0].Average(e => e.Value)) > 1e-3, "the unit's values already had mean ~0: the test proves nothing");
    }

    [Fact]
    public void ZeroMeanShiftsARatioOneSelectionTrimmedByMass()
    {
        // Ratio 1 with a mass fraction keeps part of each unit: that part is shifted like any other;
        // a dense epoch (KeepAll) keeps every entry and shifts nothing.
        int n = 3, units = 4, plane = 25;
        using var pool = new WorkerPool(2);
        var dy = TestData.Uniform(new Rng(23), n * units * plane);
        var options = new MePropOptions { Ratio = 1, Selection = SelectionPolicy.PerChannel, MassFraction = 0.5 };
        var trimmed = ByUnit(new GradientSparsifier("conv", options, convolutional: true, seed: 1).Sparsify(dy, n, units, plane, pool));
        var shifted = new GradientSparsifier("conv", options with { ZeroMean = true }, convolutional: true, seed: 1);
        var centred = ByUnit(shifted.Sparsify(dy, n, units, plane, pool));
        Assert.False(shifted.KeepsEveryEntry);
        for (int u = 0; u < units; u++)
        {
            Assert.InRange(trimmed[u].Count, 1, n * plane - 1);
            Assert.Equal(trimmed[u].Select(e => e.Position), centred[u].Select(e => e.Position));
            Assert.InRange(centred[u].Sum(e => (double)e.Value), -1e-5, 1e-5);
        }
        Assert.True(Math.Abs(trimmed[0].Average(e => e.Value)) > 1e-3, "the kept values already had mean ~0: the test proves nothing");
        shifted.KeepAll = true;
        Assert.True(shifted.KeepsEveryEntry);
        var whole = ByUnit(shifted.Sparsify(dy, n, units, plane, pool));
        for (int u = 0; u < units; u++)
            Assert.Equal(Enumerable.Range(0, n * plane).Select(i => dy[(i / plane * units + u) * plane + i % plane]), whole[u].Select(e => e.Value));
    }

    [Fact]
    public void ABadGradientShapeIsRefusedBeforeAnythingIsRead()
    {
        using var pool = new WorkerPool(1);
        var s = new GradientSparsifier("conv", new MePropOptions { Ratio = 0.1 }, convolutional: true, seed: 1);
        // 65537² + 1 overflows an int to 131073: the span must be checked against the true product.
        Assert.Throws<ArgumentException>(() => s.Sparsify(new float[131073], 1, 65537, 65537, pool));
        Assert.Throws<ArgumentException>(() => s.Sparsify(new float[4], -1, 2, -2, pool));
        Assert.Throws<ArgumentException>(() => s.Sparsify(new float[4], 0, 2, 2, pool));
        var linear = Assert.Throws<ArgumentException>(() => new GradientSparsifier("conv", new MePropOptions { Ratio = 0.1, Selection = SelectionPolicy.PerExample }, convolutional: true, seed: 1));
        Assert.Contains("'per-example'", linear.Message);
    }

    [Fact]
    public void RandomSelectionWithADecayIsRefused()
    {
        var error = Assert.Throws<ArgumentException>(() => new GradientSparsifier("conv", new MePropOptions { Ratio = 0.1, Decay = 0.6, Selection = SelectionPolicy.Random }, convolutional: true, seed: 1));
        Assert.Contains("random", error.Message);
    }

    // ---- running average (paper eq. 15) ----

    /// <summary>run = d·run + (1-d)·|g| in float32, as the formula is written.</summary>
    /// <summary>run = d·run + (1-d)·|g|, rounded as the sparsifier does it: one fused multiply-add.</summary>
    private static void UpdateRunning(float[] run, float[] g, float d)
    {
        for (int i = 0; i < g.Length; i++) run[i] = MathF.FusedMultiplyAdd(d, run[i], (1 - d) * MathF.Abs(g[i]));
    }

    [Theory]
    [InlineData(SelectionPolicy.PerChannel, 0.5, true, 10)]
    [InlineData(SelectionPolicy.PerChannel, 0.9, false, 10)]
    [InlineData(SelectionPolicy.PerExampleChannel, 0.5, true, 10)]
    [InlineData(SelectionPolicy.PerExampleChannel, 0.9, false, 10)]
    // Rows of 25 and 49: a vector and a tail that overlaps it (its lanes must be updated once).
    [InlineData(SelectionPolicy.PerChannel, 0.9, false, 25)]
    [InlineData(SelectionPolicy.PerChannel, 0.6, false, 49)]
    [InlineData(SelectionPolicy.PerExampleChannel, 0.9, false, 25)]
    [InlineData(SelectionPolicy.PerExampleChannel, 0.6, false, 49)]
    public void ConvFullRunningAverageSelectsOnHandComputedRun(SelectionPolicy policy, double decay, bool dyadic, int plane)
    {
        int n = 3, units = 4;
        var rng = new Rng(12);
        using var pool = new WorkerPool(3);
        var s = Conv(policy, 0.2, decay);
        float d = (float)decay;
        var g1 = dyadic ? Dyadic(rng, n * units * plane) : TestData.Uniform(rng, n * units * plane);
        var g2 = dyadic ? Dyadic(rng, n * units * plane) : TestData.Uniform(rng, n * units * plane);
        Assert.Equal(0, s.RunningGradient.Length);
        s.Sparsify(g1, n, units, plane, pool);
        var result = s.Sparsify(g2, n, units, plane, pool);

        // By hand: run = d·(d·0 + (1-d)|g1|) + (1-d)|g2|.
        // (run starts at 0, so after g1 it is (1-d)|g1| exactly.)
        var run = new float[g1.Length];
        for (int i = 0; i < run.Length; i++) run[i] = MathF.FusedMultiplyAdd(d, (1 - d) * MathF.Abs(g1[i]), (1 - d) * MathF.Abs(g2[i]));
        var check = new float[run.Length];
        UpdateRunning(check, g1, d);
        UpdateRunning(check, g2, d);
        Assert.Equal(check, run);

        Assert.Equal(new[] { n, units, plane }, s.RunningGradient.ShapeArray());
        Assert.Equal(run, s.RunningGradient.Span.ToArray());
        var expected = policy == SelectionPolicy.PerChannel
            ? PerChannel(g2, run, n, units, plane, s.Options.KeepCount(n * plane))
            : PerExampleChannel(g2, run, n, units, plane, s.Options.KeepCount(plane));
        AssertEntries(expected, result, n * plane, $"{policy} decay {decay}");

        // The selection must differ from plain top-k on |g2| somewhere, or the test proves nothing.
        var plain = policy == SelectionPolicy.PerChannel
            ? PerChannel(g2, Abs(g2), n, units, plane, s.Options.KeepCount(n * plane))
            : PerExampleChannel(g2, Abs(g2), n, units, plane, s.Options.KeepCount(plane));
        Assert.False(Enumerable.Range(0, units).All(u => plain[u].SequenceEqual(ByUnit(result)[u])), "running and plain selections coincide");
    }

    [Theory]
    [InlineData(SelectionPolicy.PerExample)]
    [InlineData(SelectionPolicy.Unified)]
    public void LinearFullRunningAverageSelectsOnHandComputedRun(SelectionPolicy policy)
    {
        int n = 6, units = 15;
        var rng = new Rng(13);
        using var pool = new WorkerPool(3);
        var s = Dense(policy, 0.2, decay: 0.5);
        var run = new float[n * units];
        for (int step = 0; step < 3; step++)
        {
            var dy = Dyadic(rng, n * units);
            UpdateRunning(run, dy, 0.5f);
            var result = s.Sparsify(dy, n, units, 1, pool);
            Assert.Equal(run, s.RunningGradient.Span.ToArray());
            int k = s.Options.KeepCount(units);
            var expected = policy == SelectionPolicy.PerExample
                ? PerExample(dy, run, n, units, k)
                : SameUnitsForEveryExample(dy, SumOverBatch(run, n, units), n, units, k);
            AssertEntries(expected, result, n, $"{policy} step {step}");
        }
    }

    [Fact]
    public void FullRunningStateHandlesSmallerAndLargerBatches()
    {
        int units = 3, plane = 8;
        var rng = new Rng(14);
        using var pool = new WorkerPool(2);
        const float d = 0.5f;
        var s = Conv(SelectionPolicy.PerChannel, 0.25, decay: d);

        // Step 1: batch of 5.
        var run = new float[5 * units * plane];
        var g1 = Dyadic(rng, 5 * units * plane);
        UpdateRunning(run, g1, d);
        s.Sparsify(g1, 5, units, plane, pool);
        Assert.Equal(run, s.RunningGradient.Span.ToArray());

        // Step 2: a smaller last batch of 3 updates slots 0..2 only; slots 3 and 4 stay as they were.
        var g2 = Dyadic(rng, 3 * units * plane);
        var head = run.AsSpan(0, g2.Length).ToArray();
        UpdateRunning(head, g2, d);
        head.CopyTo(run, 0);
        var result = s.Sparsify(g2, 3, units, plane, pool);
        Assert.Equal(5, s.RunningGradient.Dim(0));
        Assert.Equal(run, s.RunningGradient.Span.ToArray());
        AssertEntries(PerChannel(g2, head, 3, units, plane, s.Options.KeepCount(3 * plane)), result, 3 * plane, "smaller batch");

        // Step 3: a larger batch of 6 keeps slots 0..4 and starts slot 5 from zero.
        var g3 = Dyadic(rng, 6 * units * plane);
        var grown = new float[g3.Length];
        run.CopyTo(grown, 0);
        UpdateRunning(grown, g3, d);
        result = s.Sparsify(g3, 6, units, plane, pool);
        Assert.Equal(new[] { 6, units, plane }, s.RunningGradient.ShapeArray());
        Assert.Equal(grown, s.RunningGradient.Span.ToArray());
        AssertEntries(PerChannel(g3, grown, 6, units, plane, s.Options.KeepCount(6 * plane)), result, 6 * plane, "larger batch");
    }

    [Fact]
    public void ChannelPositionRunningAverageKeepsChosenPositionsForEveryExample()
    {
        // N = 4 and decay 1/2 with dyadic values: the mean over the batch and the update are exact.
        int n = 4, units = 5, plane = 12;
        var rng = new Rng(15);
        using var pool = new WorkerPool(3);
        const float d = 0.5f;
        var s = Conv(SelectionPolicy.PerChannel, 0.25, decay: d, shape: DecayShape.ChannelPosition);
        var run = new float[units * plane];
        long total = 0, nonZero = 0, kept = 0;
        var counters = new SparsityCounters();
        for (int step = 0; step < 3; step++)
        {
            var dy = Dyadic(rng, n * units * plane);
            for (int u = 0; u < units; u++)
                for (int p = 0; p < plane; p++)
                {
                    double mean = 0;
                    for (int i = 0; i < n; i++) mean += Math.Abs(dy[(i * units + u) * plane + p]);
                    run[u * plane + p] = (float)(d * run[u * plane + p] + (1 - d) * mean / n);
                }
            var result = s.Sparsify(dy, n, units, plane, pool);
            Assert.Equal(new[] { units, plane }, s.RunningGradient.ShapeArray());
            Assert.Equal(run, s.RunningGradient.Span.ToArray());
            int k = s.Options.KeepCount(plane);
            AssertEntries(SamePositionsForEveryExample(dy, run, n, units, plane, k), result, n * plane, $"step {step}");
            total += dy.Length; nonZero += dy.Count(v => v != 0); kept += (long)n * units * k;
            AssertCounters(ref counters, result, total, nonZero, kept, $"step {step}");
        }
    }

    [Fact]
    public void ChannelPositionRunningAverageWithOddBatchAndDecay()
    {
        // N = 3 and decay 0.9 on continuous values: the running state is compared within float32
        // rounding (rel 1e-6), the selection exactly (near ties have probability ~1e-6 here).
        int units = 3, plane = 20;
        var rng = new Rng(16);
        using var pool = new WorkerPool(2);
        const double d = 0.9;
        var s = Conv(SelectionPolicy.PerExampleChannel, 0.1, decay: d, shape: DecayShape.ChannelPosition);
        var run = new double[units * plane];
        foreach (int n in new[] { 3, 3, 2 })
        {
            var dy = TestData.Uniform(rng, n * units * plane);
            for (int u = 0; u < units; u++)
                for (int p = 0; p < plane; p++)
                {
                    double mean = 0;
                    for (int i = 0; i < n; i++) mean += Math.Abs(dy[(i * units + u) * plane + p]);
                    run[u * plane + p] = d * run[u * plane + p] + (1 - d) * mean / n;
                }
            var result = s.Sparsify(dy, n, units, plane, pool);
            var runFloat = run.Select(v => (float)v).ToArray();
            TestData.AssertClose(runFloat, s.RunningGradient.Span, 1e-7, 1e-6, $"running n={n}");
            AssertEntries(SamePositionsForEveryExample(dy, runFloat, n, units, plane, s.Options.KeepCount(plane)), result, n * plane, $"n={n}");
        }
    }

    [Fact]
    public void LinearChannelPositionRunningAverageKeepsChosenUnitsForEveryExample()
    {
        int n = 8, units = 10;
        var rng = new Rng(17);
        using var pool = new WorkerPool(1);
        const float d = 0.5f;
        foreach (var policy in new[] { SelectionPolicy.PerExample, SelectionPolicy.Unified })
        {
            var s = Dense(policy, 0.3, decay: d, shape: DecayShape.ChannelPosition);
            var run = new float[units];
            for (int step = 0; step < 3; step++)
            {
                var dy = Dyadic(rng, n * units);
                for (int u = 0; u < units; u++)
                {
                    double mean = 0;
                    for (int i = 0; i < n; i++) mean += Math.Abs(dy[i * units + u]);
                    run[u] = (float)(d * run[u] + (1 - d) * mean / n);
                }
                var result = s.Sparsify(dy, n, units, 1, pool);
                Assert.Equal(run, s.RunningGradient.Span[..units].ToArray());
                AssertEntries(SameUnitsForEveryExample(dy, run, n, units, s.Options.KeepCount(units)), result, n, $"{policy} step {step}");
            }
        }
    }

    [Fact]
    public void DecayZeroKeepsNoRunningState()
    {
        using var pool = new WorkerPool(1);
        var s = Conv(SelectionPolicy.PerChannel, 0.5);
        s.Sparsify(Dyadic(new Rng(1), 2 * 3 * 4), 2, 3, 4, pool);
        Assert.Equal(0, s.RunningGradient.Length);
    }
}
