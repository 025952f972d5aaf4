using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MeProp.Kernels;

/// <summary>
/// Chooses the k largest scores of a pool in O(n) without sorting. Scores are magnitudes (non-negative,
/// not NaN), so their bit patterns order like the floats and the k-th largest is found by searching the
/// bit pattern (interpolation, safeguarded by bisection): each step counts the scores at or above a
/// guess with SIMD compares, a pass over the pool without memory dependencies (histogram-based radix
/// selection, scattering increments over a table, ran several times slower on Intel cores). Once at most <see cref="FinalBracket"/> scores lie
/// between the bounds, those few are sorted instead. A last pass keeps the scores above the k-th value
/// t and, of those equal to t, the lowest indices first. When fewer than k scores are non-zero (t is
/// zero) all non-zero ones are kept and the lowest-index zeros fill up. Chosen indices come out
/// ascending; with k &gt;= n every index is chosen.
/// </summary>
public static class TopKSelection
{
    /// <summary>Scores between the bisection's bounds below which they are sorted rather than bisected further.</summary>
    private const int FinalBracket = 32;

    /// <summary>Writes the chosen indices (ascending) to <paramref name="chosen"/> and returns how many (min(k, n)).</summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<int> chosen) => Select(scores, k, chosen, out _);

    /// <summary>
    /// As <see cref="Select(ReadOnlySpan{float}, int, Span{int})"/>; also gives the smallest chosen score
    /// (the k-th largest; zero when nothing is chosen).
    /// </summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<int> chosen, out float kthLargest)
    {
        int n = scores.Length;
        kthLargest = 0;
        if (k <= 0 || n == 0) return 0;
        if (k >= n)
        {
            kthLargest = float.PositiveInfinity;
            for (int i = 0; i < n; i++)
            {
                chosen[i] = i;
                kthLargest = MathF.Min(kthLargest, scores[i]);
            }
            return n;
        }
        var bits = MemoryMarshal.Cast<float, int>(scores);
        int nonZero = CountAtLeast(bits, 1, out int max);
        if (nonZero <= k)
        {
            int count = TakeNonZeroAndFirstZeros(bits, k - nonZero, chosen);
            if (nonZero == k) kthLargest = SmallestAt(scores, chosen[..count]);
            return count;
        }

        // Invariant: at least k scores are >= lo, fewer than k (countHi) are >= hi. The next guess is
        // interpolated, as if the counts fell evenly from lo to hi, which for a smooth spread of scores
        // takes a few passes instead of the ~25 a bisection of the bit pattern does; a guess that does
        // not halve the scores between the bounds is followed by a plain bisection step.
        int lo = 1, hi = max + 1, countLo = nonZero, countHi = 0;
        bool bisect = false;
        while (hi - lo > 1 && countLo - countHi > FinalBracket)
        {
            int between = countLo - countHi;
            long offset = bisect ? (hi - lo) / 2 : (long)(hi - lo) * (countLo - k) / between;
            int mid = lo + (int)Math.Clamp(offset, 1, hi - lo - 1);
            int count = CountAtLeast(bits, mid, out _);
            if (count >= k) (lo, countLo) = (mid, count);
            else (hi, countHi) = (mid, count);
            bisect = !bisect && countLo - countHi > between / 2;
        }
        int threshold = lo, above = countHi;
        if (hi - lo > 1) threshold = KthInBracket(bits, lo, hi, k - countHi, ref above);
        kthLargest = BitConverter.Int32BitsToSingle(threshold);
        return Collect(bits, threshold, k - above, chosen);
    }

    private static float SmallestAt(ReadOnlySpan<float> scores, ReadOnlySpan<int> indices)
    {
        float smallest = float.PositiveInfinity;
        foreach (int i in indices) smallest = MathF.Min(smallest, scores[i]);
        return smallest;
    }

    /// <summary>How many bit patterns are &gt;= <paramref name="floor"/>; also their maximum.</summary>
    private static int CountAtLeast(ReadOnlySpan<int> bits, int floor, out int max)
    {
        int count = 0, i = 0;
        max = 0;
        ref int start = ref MemoryMarshal.GetReference(bits);
        if (Vector512.IsHardwareAccelerated)
        {
            // Lanes count by subtracting the all-ones compare masks: no per-vector mask-to-scalar step.
            var f = Vector512.Create(floor);
            Vector512<int> counts = default, m = default;
            for (; i + 16 <= bits.Length; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref start, (nuint)i);
                counts -= Vector512.GreaterThanOrEqual(v, f);
                m = Vector512.Max(m, v);
            }
            count = Vector512.Sum(counts);
            max = MaxLane(m.GetLower().GetLower(), m.GetLower().GetUpper(), m.GetUpper().GetLower(), m.GetUpper().GetUpper());
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var f = Vector256.Create(floor);
            Vector256<int> counts = default, m = default;
            for (; i + 8 <= bits.Length; i += 8)
            {
                var v = Vector256.LoadUnsafe(ref start, (nuint)i);
                counts -= Vector256.GreaterThanOrEqual(v, f);
                m = Vector256.Max(m, v);
            }
            count = Vector256.Sum(counts);
            max = MaxLane(m.GetLower(), m.GetUpper(), Vector128<int>.Zero, Vector128<int>.Zero);
        }
        for (; i < bits.Length; i++)
        {
            if (bits[i] >= floor) count++;
            max = Math.Max(max, bits[i]);
        }
        return count;
    }

    private static int MaxLane(Vector128<int> a, Vector128<int> b, Vector128<int> c, Vector128<int> d)
    {
        var m = Vector128.Max(Vector128.Max(a, b), Vector128.Max(c, d));
        return Math.Max(Math.Max(m[0], m[1]), Math.Max(m[2], m[3]));
    }

    /// <summary>
    /// The <paramref name="rank"/>-th largest (1-based) of the few bit patterns in [lo, hi); adds to
    /// <paramref name="above"/> how many of them are larger than it.
    /// </summary>
    private static int KthInBracket(ReadOnlySpan<int> bits, int lo, int hi, int rank, ref int above)
    {
        Span<int> members = stackalloc int[FinalBracket];
        int m = 0, i = 0;
        ref int start = ref MemoryMarshal.GetReference(bits);
        if (Vector512.IsHardwareAccelerated)
        {
            var vLo = Vector512.Create(lo);
            var vHi = Vector512.Create(hi);
            for (; i + 16 <= bits.Length; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref start, (nuint)i);
                ulong mask = (Vector512.GreaterThanOrEqual(v, vLo) & Vector512.LessThan(v, vHi)).ExtractMostSignificantBits();
                for (; mask != 0; mask &= mask - 1) members[m++] = bits[i + BitOperations.TrailingZeroCount(mask)];
            }
        }
        for (; i < bits.Length; i++)
            if (bits[i] >= lo && bits[i] < hi) members[m++] = bits[i];
        members[..m].Sort();
        int kth = members[m - rank];
        for (int j = m - rank + 1; j < m; j++) if (members[j] > kth) above++;
        return kth;
    }

    /// <summary>Indices (ascending) of every bit pattern above t and of the first <paramref name="ties"/> equal to t.</summary>
    private static int Collect(ReadOnlySpan<int> bits, int t, int ties, Span<int> chosen)
    {
        int count = 0, i = 0;
        ref int start = ref MemoryMarshal.GetReference(bits);
        if (Vector512.IsHardwareAccelerated)
        {
            var f = Vector512.Create(t);
            for (; i + 16 <= bits.Length; i += 16)
            {
                ulong mask = Vector512.GreaterThanOrEqual(Vector512.LoadUnsafe(ref start, (nuint)i), f).ExtractMostSignificantBits();
                for (; mask != 0; mask &= mask - 1)
                {
                    int index = i + BitOperations.TrailingZeroCount(mask);
                    if (bits[index] > t || ties-- > 0) chosen[count++] = index;
                }
            }
        }
        for (; i < bits.Length; i++)
            if (bits[i] > t || bits[i] == t && ties-- > 0) chosen[count++] = i;
        return count;
    }

    /// <summary>Every index of a non-zero score plus the first <paramref name="zeros"/> indices of zero ones, ascending.</summary>
    private static int TakeNonZeroAndFirstZeros(ReadOnlySpan<int> bits, int zeros, Span<int> chosen)
    {
        int count = 0;
        for (int i = 0; i < bits.Length; i++)
            if (bits[i] != 0 || zeros-- > 0) chosen[count++] = i;
        return count;
    }

    /// <summary>
    /// Every non-zero index (ascending) plus the first <paramref name="zeros"/> indices of zero scores,
    /// merged in ascending order: zeros tie, so the lowest indices win. This is the top k of a pool
    /// whose non-zero scores (fewer than k) sit at <paramref name="nonZero"/>, k = their count + zeros.
    /// </summary>
    public static int MergeNonZeroWithFirstZeros(ReadOnlySpan<int> nonZero, int zeros, Span<int> chosen)
    {
        int count = 0, next = 0, index = 0;
        for (; zeros > 0; index++)
        {
            // Below the last zero taken, every index is chosen: non-zero ones, then zeros until enough.
            if (next < nonZero.Length && nonZero[next] == index) next++;
            else zeros--;
            chosen[count++] = index;
        }
        while (next < nonZero.Length) chosen[count++] = nonZero[next++];
        return count;
    }
}

/// <summary>Twin of <see cref="TopKSelection"/>: sort by (score descending, index ascending), take k, sort indices.</summary>
public static class TopKSelectionReference
{
    public static int[] Select(ReadOnlySpan<float> scores, int k)
    {
        var order = Enumerable.Range(0, scores.Length).ToArray();
        var copy = scores.ToArray();
        Array.Sort(order, (x, y) => copy[x] != copy[y] ? copy[y].CompareTo(copy[x]) : x.CompareTo(y));
        var kept = order.Take(Math.Max(0, Math.Min(k, scores.Length))).ToArray();
        Array.Sort(kept);
        return kept;
    }
}
