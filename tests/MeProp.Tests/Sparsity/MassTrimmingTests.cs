using MeProp.Kernels;
using MeProp.Sparsity;
using MeProp.Tensors;
using MeProp.Threading;
using static MeProp.Tests.Sparsity.SparseTestData;

namespace MeProp.Tests.Sparsity;

/// <summary>
/// Adaptive k (MassFraction): the trimmed selection against the untrimmed one cut by hand: per pool, its
/// entries by |dy| descending (then position, or unit, ascending), the shortest prefix whose float64 sum
/// reaches the fraction of the pool's float64 L1 mass, at least one entry.
/// </summary>
public class MassTrimmingTests
{
    private static List<(int Unit, int Position, float Value)> Entries(SparseGradient g)
    {
        var entries = new List<(int, int, float)>();
        for (int u = 0; u < g.Units; u++)
            for (int e = 0; e < g.Counts[u]; e++) entries.Add((u, g.Positions[u * g.Capacity + e], g.Values[u * g.Capacity + e]));
        return entries;
    }

    private static IEnumerable<(int Unit, int Position, float Value)> Cut(IEnumerable<(int Unit, int Position, float Value)> pool, double mass, double fraction, bool byUnit)
    {
        var ordered = pool.OrderByDescending(e => Math.Abs(e.Value)).ThenBy(e => byUnit ? e.Unit : e.Position).ToList();
        double sum = 0;
        int keep = 0;
        while (keep < ordered.Count && sum < fraction * mass) sum += Math.Abs(ordered[keep++].Value);
        return ordered.Take(Math.Max(keep, ordered.Count == 0 ? 0 : 1));
    }

    public static TheoryData<int, int, int, double, double> ConvCases => new()
    {
        // n, units, plane, ratio, fraction
        { 2, 3, 7, 1, 1 }, { 3, 4, 25, 0.3, 0.5 }, { 4, 5, 49, 0.1, 0.9 }, { 1, 2, 13, 1, 0.2 }, { 5, 3, 9, 0.5, 0.7 },
    };

    [Theory]
    [MemberData(nameof(ConvCases))]
    public void PerChannel_KeepsTheShortestPrefixHoldingTheFraction(int n, int units, int plane, double ratio, double fraction)
    {
        var rng = new Rng((ulong)(n * 1000 + units * 100 + plane));
        using var pool = new WorkerPool(2);
        foreach (double decay in new[] { 0.0, 0.6 })
        {
            var plain = new GradientSparsifier("conv", new MePropOptions { Ratio = ratio, Decay = decay }, convolutional: true, seed: 1);
            var adaptive = new GradientSparsifier("conv", new MePropOptions { Ratio = ratio, Decay = decay, MassFraction = fraction }, convolutional: true, seed: 1);
            for (int step = 0; step < 3; step++)
            {
                var dy = Dyadic(rng, n * units * plane);
                var all = Entries(plain.Sparsify(dy, n, units, plane, pool));
                var trimmed = adaptive.Sparsify(dy, n, units, plane, pool);
                var expected = new List<(int, int, float)>();
                for (int u = 0; u < units; u++)
                {
                    double mass = 0;
                    for (int i = 0; i < n; i++)
                        for (int p = 0; p < plane; p++) mass += Math.Abs(dy[(i * units + u) * plane + p]);
                    expected.AddRange(Cut(all.Where(e => e.Unit == u), mass, fraction, byUnit: false).OrderBy(e => e.Position));
                }
                Assert.Equal(expected, Entries(trimmed));
                // Selected counts what is kept: the untrimmed selection less the entries trimmed off.
                Assert.Equal(plain.Result.Selected - (all.Count - expected.Count), trimmed.Selected);
            }
        }
    }

    [Fact]
    public void FractionOne_KeepsEveryNonZeroOfTheSelection()
    {
        var rng = new Rng(5);
        using var pool = new WorkerPool(1);
        var plain = new GradientSparsifier("conv", new MePropOptions { Ratio = 1 }, convolutional: true, seed: 1);
        var adaptive = new GradientSparsifier("conv", new MePropOptions { Ratio = 1, MassFraction = 1 }, convolutional: true, seed: 1);
        var dy = Dyadic(rng, 3 * 4 * 20);
        Assert.Equal(Entries(plain.Sparsify(dy, 3, 4, 20, pool)), Entries(adaptive.Sparsify(dy, 3, 4, 20, pool)));
    }

    [Theory]
    [InlineData(6, 11, 1.0, 0.5)]
    [InlineData(9, 20, 0.3, 0.8)]
    [InlineData(1, 7, 1.0, 0.01)]
    public void PerExample_KeepsTheShortestPrefixOfEachRow(int n, int units, double ratio, double fraction)
    {
        var rng = new Rng((ulong)(n * 100 + units));
        using var pool = new WorkerPool(2);
        var plain = new GradientSparsifier("fc", new MePropOptions { Ratio = ratio, Selection = SelectionPolicy.PerExample }, convolutional: false, seed: 1);
        var adaptive = new GradientSparsifier("fc", new MePropOptions { Ratio = ratio, Selection = SelectionPolicy.PerExample, MassFraction = fraction }, convolutional: false, seed: 1);
        var dy = Dyadic(rng, n * units);
        var all = Entries(plain.Sparsify(dy, n, units, 1, pool));
        var trimmed = Entries(adaptive.Sparsify(dy, n, units, 1, pool));
        var expected = new List<(int, int, float)>();
        for (int i = 0; i < n; i++)
        {
            double mass = 0;
            for (int u = 0; u < units; u++) mass += Math.Abs(dy[i * units + u]);
            expected.AddRange(Cut(all.Where(e => e.Position == i), mass, fraction, byUnit: true));
        }
        Assert.Equal(expected.OrderBy(e => e.Item1).ThenBy(e => e.Item2), trimmed);
    }

    [Fact]
    public void IsRefusedWithPoliciesItDoesNotCover()
    {
        Assert.Throws<ArgumentException>(() => new MePropOptions { MassFraction = 0.5, Selection = SelectionPolicy.Channel }.Validate());
        Assert.Throws<ArgumentException>(() => new MePropOptions { MassFraction = 0.5, Selection = SelectionPolicy.Random }.Validate());
        Assert.Throws<ArgumentException>(() => new MePropOptions { MassFraction = 0.5, Decay = 0.6, DecayShape = DecayShape.ChannelPosition }.Validate());
        Assert.Throws<ArgumentException>(() => new MePropOptions { MassFraction = 0 }.Validate());
        Assert.Throws<ArgumentException>(() => new MePropOptions { MassFraction = 1.5 }.Validate());
        new MePropOptions { MassFraction = 0.9, Decay = 0.6 }.Validate();
    }
}
