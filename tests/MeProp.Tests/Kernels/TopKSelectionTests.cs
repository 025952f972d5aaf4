using MeProp.Kernels;
using MeProp.Tensors;

namespace MeProp.Tests.Kernels;

/// <summary>
/// TopKSelection (bisection on the bit pattern) against its twin TopKSelectionReference (full sort by score descending,
/// index ascending). Exact equality: the chosen set is defined, ties included (lowest index wins).
/// </summary>
public class TopKSelectionTests
{
    private enum PoolKind { Uniform, FewLevels, TwoLevels, AllEqual, AllZero, Sorted, Reversed, SortedWithTies, NearlyEqual, MostlyZero, ZerosAndDenormals, ManyOctaves }

    private static float[] Pool(Rng rng, int n, PoolKind kind)
    {
        var s = new float[n];
        float[] levels = [0f, 0.25f, 0.5f, 1f];
        for (int i = 0; i < n; i++)
        {
            s[i] = kind switch
            {
                PoolKind.Uniform => rng.NextUniform(0f, 1f),
                // A ReLU network's gradient: a few per cent non-zero, so k often exceeds the non-zeros.
                PoolKind.MostlyZero => rng.NextDouble() < 0.03 ? rng.NextUniform(0f, 1f) : 0f,
                PoolKind.ZerosAndDenormals => rng.NextDouble() < 0.5 ? 0f : rng.NextDouble() < 0.5 ? float.Epsilon * (1 + rng.NextInt(5)) : rng.NextUniform(0f, 1f),
                PoolKind.FewLevels => levels[rng.NextInt(levels.Length)],
                PoolKind.TwoLevels => rng.NextInt(2) == 0 ? 0.5f : 2f,
                PoolKind.AllEqual => 0.75f,
                PoolKind.AllZero => 0f,
                PoolKind.Sorted => i,
                PoolKind.Reversed => n - i,
                PoolKind.SortedWithTies => i / 3,
                // Neighbouring floats: differences of one ulp must still order the scores.
                // Magnitudes over some forty octaves, as gradients have: the bisection takes many steps.
                PoolKind.ManyOctaves => MathF.Exp(rng.NextUniform(-25f, 3f)),
                PoolKind.NearlyEqual => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(1f) + rng.NextInt(3)),
                _ => throw new ArgumentOutOfRangeException(nameof(kind)),
            };
        }
        return s;
    }

    /// <summary>Runs both, asserts equality, and checks the reference's own contract independently.</summary>
    private static void Check(float[] scores, int k, string what)
    {
        int n = scores.Length;
        int expectedCount = Math.Clamp(k, 0, n);
        var expected = TopKSelectionReference.Select(scores, k);
        Assert.True(expected.Length == expectedCount, $"{what}: reference chose {expected.Length}, expected {expectedCount}");

        // The chosen span is exactly as long as the result, so any write past it throws.
        var chosen = new int[expectedCount];
        var before = (float[])scores.Clone();
        int count = TopKSelection.Select(scores, k, chosen);
        Assert.True(count == expectedCount, $"{what}: returned {count}, expected {expectedCount}");
        Assert.True(expected.AsSpan().SequenceEqual(chosen), $"{what}: chose [{string.Join(",", chosen)}], reference [{string.Join(",", expected)}]");
        Assert.Equal(before, scores);

        // Contract, checked without the reference: ascending indices; every chosen entry beats every
        // other one by score, or ties with it and has the lower index.
        var isChosen = new bool[n];
        for (int i = 0; i < count; i++)
        {
            if (i > 0) Assert.True(chosen[i - 1] < chosen[i], $"{what}: indices not strictly ascending");
            isChosen[chosen[i]] = true;
        }
        float minChosen = float.PositiveInfinity, maxOther = float.NegativeInfinity;
        int lastChosenAtMin = -1, firstOtherAtMax = int.MaxValue;
        for (int i = 0; i < n; i++)
        {
            if (isChosen[i])
            {
                if (scores[i] < minChosen) { minChosen = scores[i]; lastChosenAtMin = i; }
                else if (scores[i] == minChosen) lastChosenAtMin = i;
            }
            else
            {
                if (scores[i] > maxOther) { maxOther = scores[i]; firstOtherAtMax = i; }
            }
        }
        if (count > 0 && count < n)
        {
            Assert.True(minChosen >= maxOther, $"{what}: dropped {maxOther} while keeping {minChosen}");
            if (minChosen == maxOther)
                Assert.True(lastChosenAtMin < firstOtherAtMax, $"{what}: tie at {minChosen} kept index {lastChosenAtMin} over {firstOtherAtMax}");
        }
    }

    [Fact]
    public void MatchesReferenceForAllSmallSizesAndEveryK()
    {
        var rng = new Rng(20240601);
        foreach (PoolKind kind in Enum.GetValues<PoolKind>())
            for (int n = 0; n <= 70; n++)
            {
                var scores = Pool(rng, n, kind);
                for (int k = 0; k <= n + 2; k++) Check(scores, k, $"{kind} n={n} k={k}");
            }
    }

    [Theory]
    [InlineData(101)]
    [InlineData(257)]
    [InlineData(1001)]
    [InlineData(4099)]
    public void MatchesReferenceForLargeOddSizes(int n)
    {
        var rng = new Rng((ulong)n);
        int[] ks = [0, 1, 2, 3, n / 20, n / 10, n / 3, n / 2, n - 2, n - 1, n, n + 1, n + 2, -1, int.MaxValue];
        foreach (PoolKind kind in Enum.GetValues<PoolKind>())
        {
            var scores = Pool(rng, n, kind);
            foreach (int k in ks) Check(scores, k, $"{kind} n={n} k={k}");
            for (int trial = 0; trial < 5; trial++) Check(scores, 1 + rng.NextInt(n), $"{kind} n={n} random k");
        }
    }

    [Fact]
    public void ChosenBufferLargerThanPoolAndReusedAcrossCalls()
    {
        // A layer reuses one buffer for the chosen indices, longer than the pool and full of stale values.
        var rng = new Rng(5);
        var chosen = new int[500];
        for (int trial = 0; trial < 200; trial++)
        {
            int n = 1 + rng.NextInt(300);
            var scores = Pool(rng, n, (PoolKind)rng.NextInt(Enum.GetValues<PoolKind>().Length));
            int k = rng.NextInt(n + 1);
            int count = TopKSelection.Select(scores, k, chosen);
            Assert.Equal(TopKSelectionReference.Select(scores, k), chosen[..count]);
        }
    }

    [Fact]
    public void LabelsStandInForTheChosenIndicesAndTheKthLargestIsTheSmallestChosen()
    {
        var rng = new Rng(77);
        foreach (PoolKind kind in Enum.GetValues<PoolKind>())
            foreach (int n in new[] { 1, 7, 15, 16, 17, 31, 70, 257, 1001 })
            {
                var scores = Pool(rng, n, kind);
                var labels = Enumerable.Range(0, n).Select(i => 3 * i + 1000).ToArray();
                foreach (int k in new[] { 0, 1, 2, n / 20, n / 3, n - 1, n, n + 1 })
                {
                    var indices = TopKSelectionReference.Select(scores, k);
                    var chosen = new int[indices.Length];
                    int count = TopKSelection.Select(scores, k, chosen, out float kth, labels);
                    Assert.Equal(indices.Length, count);
                    Assert.True(indices.Select(i => labels[i]).SequenceEqual(chosen), $"{kind} n={n} k={k}: labels");
                    float smallest = indices.Length == 0 ? 0 : indices.Min(i => scores[i]);
                    Assert.True(smallest.Equals(kth), $"{kind} n={n} k={k}: k-th largest {kth}, smallest chosen {smallest}");
                }
            }
    }

    [Fact]
    public void RejectsFewerLabelsThanScores()
    {
        float[] scores = [3, 1, 2];
        Assert.Throws<ArgumentException>(() => TopKSelection.Select(scores, 2, new int[2], out _, new int[2]));
    }

    [Fact]
    public void ReferenceBreaksTiesByLowestIndex()
    {
        // Hand-checked: scores 2 at {1, 4}, 1 at {0, 2, 5}, 0 at {3}.
        float[] scores = [1, 2, 1, 0, 2, 1];
        Assert.Equal(new[] { 1, 4 }, TopKSelectionReference.Select(scores, 2));
        Assert.Equal(new[] { 0, 1, 4 }, TopKSelectionReference.Select(scores, 3));
        Assert.Equal(new[] { 0, 1, 2, 4 }, TopKSelectionReference.Select(scores, 4));
        var chosen = new int[4];
        Assert.Equal(4, TopKSelection.Select(scores, 4, chosen));
        Assert.Equal(new[] { 0, 1, 2, 4 }, chosen);
    }
}
