using MeProp.Kernels;
using MeProp.Sparsity;
using MeProp.Tensors;

namespace MeProp.Tests.Sparsity;

/// <summary>
/// Gradients and reference selections for the meProp tests. Gradients are [N, U, P] (N examples,
/// U units, P positions per example). An entry of unit u is (position, value), position = n·P + p.
/// </summary>
internal static class SparseTestData
{
    /// <summary>
    /// Multiples of 1/8 in [-levels/8, levels/8]: many exact ties and zeros, and every sum, mean over a
    /// power-of-two batch and running average with decay 1/2 is exact in float32, so references
    /// computed another way agree bit for bit.
    /// </summary>
    public static float[] Dyadic(Rng rng, int length, int levels = 4)
    {
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = (rng.NextInt(2 * levels + 1) - levels) / 8f;
        return values;
    }

    /// <summary>The kept entries of each unit, in stored order.</summary>
    public static List<(int Position, float Value)>[] ByUnit(SparseGradient g)
    {
        var units = new List<(int, float)>[g.Units];
        for (int u = 0; u < g.Units; u++)
        {
            units[u] = [];
            for (int e = 0; e < g.Counts[u]; e++) units[u].Add((g.Positions[u * g.Capacity + e], g.Values[u * g.Capacity + e]));
        }
        return units;
    }

    public static List<(int Position, float Value)>[] EmptyUnits(int units) =>
        Enumerable.Range(0, units).Select(_ => new List<(int, float)>()).ToArray();

    /// <summary>
    /// Asserts the sparse gradient stores exactly the expected selection's non-zero entries (positions
    /// ascending) and counts all of them, zeros included, as selected.
    /// </summary>
    public static void AssertEntries(List<(int Position, float Value)>[] expected, SparseGradient g, int positionCount, string what)
    {
        Assert.True(g.Units == expected.Length, $"{what}: {g.Units} units, expected {expected.Length}");
        Assert.True(g.PositionCount == positionCount, $"{what}: PositionCount {g.PositionCount}, expected {positionCount}");
        Assert.True(g.Selected == expected.Sum(e => e.Count), $"{what}: {g.Selected} selected, expected {expected.Sum(e => e.Count)}");
        var actual = ByUnit(g);
        for (int u = 0; u < expected.Length; u++)
        {
            var want = expected[u].Where(e => e.Value != 0).OrderBy(e => e.Position).ToList();
            Assert.True(g.Counts[u] <= g.Capacity, $"{what}: unit {u} holds {g.Counts[u]} entries, capacity {g.Capacity}");
            if (!want.SequenceEqual(actual[u]))
                Assert.Fail($"{what}: unit {u} kept [{Text(actual[u])}], expected [{Text(want)}]");
        }
    }

    private static string Text(List<(int Position, float Value)> entries) =>
        string.Join(" ", entries.Take(40).Select(e => $"{e.Position}:{e.Value}")) + (entries.Count > 40 ? " ..." : "");

    /// <summary>dy with every entry the sparse gradient does not keep set to zero (values taken from dy).</summary>
    public static float[] Masked(ReadOnlySpan<float> dy, SparseGradient g, int units, int plane)
    {
        var masked = new float[dy.Length];
        for (int u = 0; u < units; u++)
            for (int e = 0; e < g.Counts[u]; e++)
            {
                int position = g.Positions[u * g.Capacity + e];
                int n = position / plane, p = position % plane;
                long i = ((long)n * units + u) * plane + p;
                masked[i] = dy[(int)i];
            }
        return masked;
    }

    // Reference selections. scores has the shape of dy ([N, U, P]); values come from dy.

    /// <summary>One pool per unit over all N·P entries.</summary>
    public static List<(int, float)>[] PerChannel(float[] dy, float[] scores, int n, int units, int plane, int k)
    {
        var result = EmptyUnits(units);
        var pool = new float[n * plane];
        for (int u = 0; u < units; u++)
        {
            for (int i = 0; i < n; i++)
                for (int p = 0; p < plane; p++) pool[i * plane + p] = scores[(i * units + u) * plane + p];
            foreach (int c in TopKSelectionReference.Select(pool, k))
                result[u].Add((c, dy[(c / plane * units + u) * plane + c % plane]));
        }
        return result;
    }

    /// <summary>One pool per (example, unit) over P entries.</summary>
    public static List<(int, float)>[] PerExampleChannel(float[] dy, float[] scores, int n, int units, int plane, int k)
    {
        var result = EmptyUnits(units);
        for (int u = 0; u < units; u++)
            for (int i = 0; i < n; i++)
            {
                var pool = scores.AsSpan((i * units + u) * plane, plane);
                foreach (int p in TopKSelectionReference.Select(pool, k))
                    result[u].Add((i * plane + p, dy[(i * units + u) * plane + p]));
            }
        return result;
    }

    /// <summary>Linear (P = 1): one pool per example over the U outputs.</summary>
    public static List<(int, float)>[] PerExample(float[] dy, float[] scores, int n, int units, int k)
    {
        var result = EmptyUnits(units);
        for (int i = 0; i < n; i++)
            foreach (int u in TopKSelectionReference.Select(scores.AsSpan(i * units, units), k))
                result[u].Add((i, dy[i * units + u]));
        return result;
    }

    /// <summary>Linear (P = 1): one set of units, chosen by the given unit scores, kept for every example.</summary>
    public static List<(int, float)>[] SameUnitsForEveryExample(float[] dy, float[] unitScores, int n, int units, int k)
    {
        var result = EmptyUnits(units);
        foreach (int u in TopKSelectionReference.Select(unitScores, k))
            for (int i = 0; i < n; i++) result[u].Add((i, dy[i * units + u]));
        return result;
    }

    /// <summary>Conv: positions per unit chosen from scores [U, P], kept for every example.</summary>
    public static List<(int, float)>[] SamePositionsForEveryExample(float[] dy, float[] unitPositionScores, int n, int units, int plane, int k)
    {
        var result = EmptyUnits(units);
        for (int u = 0; u < units; u++)
        {
            var chosen = TopKSelectionReference.Select(unitPositionScores.AsSpan(u * plane, plane), k);
            for (int i = 0; i < n; i++)
                foreach (int p in chosen) result[u].Add((i * plane + p, dy[(i * units + u) * plane + p]));
        }
        return result;
    }

    /// <summary>Sum over the batch of scores [N, U] per unit (exact for dyadic data).</summary>
    public static float[] SumOverBatch(float[] scores, int n, int units)
    {
        var sums = new float[units];
        for (int u = 0; u < units; u++)
        {
            double s = 0;
            for (int i = 0; i < n; i++) s += scores[i * units + u];
            sums[u] = (float)s;
        }
        return sums;
    }

    public static float[] Abs(float[] values) => values.Select(MathF.Abs).ToArray();
}
