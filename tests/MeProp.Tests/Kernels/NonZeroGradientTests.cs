using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Kernels;

/// <summary>NonZeroGradient against its plain-loop twin: counts and gathered entries, exactly.</summary>
public class NonZeroGradientTests
{
    /// <summary>Zeros of both signs at random, a few NaN and infinities (not zero: they must be kept).</summary>
    private static float[] Values(Rng rng, int length, double density)
    {
        var values = new float[length];
        for (int i = 0; i < length; i++)
        {
            double r = rng.NextDouble();
            values[i] = r >= density ? (i % 3 == 0 ? -0f : 0f)
                : (i % 97) switch { 5 => float.NaN, 7 => float.PositiveInfinity, _ => rng.NextUniform(-1, 1) };
        }
        return values;
    }

    public static TheoryData<int, int, int, double> Shapes => new()
    {
        // n, units, plane, density
        { 1, 1, 1, 1 }, { 3, 5, 7, 0.3 }, { 2, 4, 16, 0.5 }, { 4, 3, 17, 0.1 }, { 5, 9, 33, 0.02 }, { 10, 64, 1, 0.2 },
        { 2, 7, 196, 0.05 }, { 3, 2, 40, 0 }, { 1, 6, 31, 1 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void CountAndGather_MatchReference(int n, int units, int plane, double density)
    {
        var rng = new Rng((ulong)(n * 100000 + units * 1000 + plane));
        var dy = Values(rng, n * units * plane, density);
        Assert.Equal(NonZeroGradientReference.Count(dy), NonZeroGradient.Count(dy));
        var expected = new SparseGradient();
        NonZeroGradientReference.Gather(dy, n, units, plane, expected);
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            var actual = new SparseGradient();
            // Stale entries from an earlier, larger gather must not leak into this one.
            NonZeroGradient.Gather(Values(rng, (n + 1) * units * plane, 1), n + 1, units, plane, actual, pool);
            NonZeroGradient.Gather(dy, n, units, plane, actual, pool);
            Assert.Equal(expected.Units, actual.Units);
            Assert.Equal(expected.PositionCount, actual.PositionCount);
            Assert.Equal(expected.Count, actual.Count);
            Assert.Equal(expected.Count, actual.Selected);
            Assert.Equal(expected.Count, actual.NonZeroBefore);
            for (int u = 0; u < units; u++)
            {
                Assert.Equal(expected.Counts[u], actual.Counts[u]);
                for (int e = 0; e < expected.Counts[u]; e++)
                {
                    Assert.Equal(expected.Positions[u * expected.Capacity + e], actual.Positions[u * actual.Capacity + e]);
                    Assert.Equal(expected.Values[u * expected.Capacity + e], actual.Values[u * actual.Capacity + e]);
                }
            }
            Assert.Equal(expected.ToDenseRows(), actual.ToDenseRows());
        }
    }

    [Fact]
    public void Count_TreatsBothZerosAsZero_AndNaNAsNotZero()
    {
        Assert.Equal(0, NonZeroGradient.Count([0f, -0f, 0f]));
        Assert.Equal(3, NonZeroGradient.Count([float.NaN, 0f, float.NegativeInfinity, -0f, 1e-45f]));
        var longer = new float[37];
        longer[0] = 1; longer[16] = -2; longer[36] = float.NaN;
        Assert.Equal(3, NonZeroGradient.Count(longer));
    }

    [Fact]
    public void Gather_RejectsAShortSpan()
    {
        using var pool = new WorkerPool(1);
        Assert.Throws<ArgumentException>(() => NonZeroGradient.Gather(new float[5], 2, 1, 3, new SparseGradient(), pool));
    }
}
