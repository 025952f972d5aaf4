using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MeProp.Kernels;

/// <summary>
/// Chooses the k largest scores of a pool in O(n) without sorting: the k-th largest value t is found by
/// a radix select on the float bits (non-negative floats order like their bit patterns): a histogram of
/// the top 11 bits locates t's bucket, then histograms of the next 11 and last 10 bits of only that
/// bucket's members pin t exactly. One pass in index order then takes every score above t and, for ties
/// at t, the lowest indices first. Chosen indices come out ascending; with k &gt;= n every index is chosen.
/// Scores are magnitudes (non-negative, not NaN). The first histogram is spread over four copies so
/// that runs of equal values (gradients are often mostly zero) do not serialise on one counter.
/// </summary>
public static class TopKSelection
{
    private const int TopBits = 11, MiddleBits = 11, LowBits = 10;
    private const int Buckets = 1 << TopBits;

    /// <summary>Scratch floats <see cref="Select"/> needs for a pool of n.</summary>
    public static int ScratchLength(int n) => n + 4 * Buckets;

    /// <summary>
    /// Writes the chosen indices (ascending) to <paramref name="chosen"/> and returns how many (min(k, n)).
    /// <paramref name="scratch"/> must hold <see cref="ScratchLength"/>(n) values.
    /// </summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<int> chosen, Span<float> scratch)
    {
        int n = scores.Length;
        if (k >= n)
        {
            for (int i = 0; i < n; i++) chosen[i] = i;
            return n;
        }
        if (k <= 0) return 0;
        var bits = MemoryMarshal.Cast<float, uint>(scores);
        uint threshold = KthLargestBits(bits, k, MemoryMarshal.Cast<float, uint>(scratch), out int above);
        int ties = k - above;
        return ties == 0 ? CollectAbove(bits, threshold, chosen) : CollectWithTies(bits, threshold, ties, chosen);
    }

    /// <summary>Indices of values &gt; threshold, ascending; whole vectors with none are skipped.</summary>
    private static int CollectAbove(ReadOnlySpan<uint> bits, uint threshold, Span<int> chosen)
    {
        int count = 0, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var t = Vector256.Create(threshold);
            ref uint start = ref MemoryMarshal.GetReference(bits);
            for (; i + 8 <= bits.Length; i += 8)
            {
                uint mask = Vector256.GreaterThan(Vector256.LoadUnsafe(ref start, (nuint)i), t).ExtractMostSignificantBits();
                while (mask != 0)
                {
                    chosen[count++] = i + BitOperations.TrailingZeroCount(mask);
                    mask &= mask - 1;
                }
            }
        }
        for (; i < bits.Length; i++) if (bits[i] > threshold) chosen[count++] = i;
        return count;
    }

    private static int CollectWithTies(ReadOnlySpan<uint> bits, uint threshold, int ties, Span<int> chosen)
    {
        int count = 0;
        for (int i = 0; i < bits.Length; i++)
        {
            uint b = bits[i];
            if (b > threshold) chosen[count++] = i;
            else if (b == threshold && ties > 0) { chosen[count++] = i; ties--; }
        }
        return count;
    }

    /// <summary>
    /// Bit pattern of the k-th largest (1-based) value, and how many values are strictly larger.
    /// scratch holds four histograms (first 4·2^11 entries) and the members of the chosen bucket (the rest).
    /// </summary>
    private static uint KthLargestBits(ReadOnlySpan<uint> bits, int k, Span<uint> scratch, out int above)
    {
        var histograms = scratch[..(4 * Buckets)];
        var members = scratch[(4 * Buckets)..];
        histograms.Clear();
        const int shift = 32 - TopBits;
        int n = bits.Length, i = 0;
        ref uint h = ref MemoryMarshal.GetReference(histograms);
        for (; i + 4 <= n; i += 4)
        {
            Unsafe.Add(ref h, (int)(bits[i] >> shift))++;
            Unsafe.Add(ref h, Buckets + (int)(bits[i + 1] >> shift))++;
            Unsafe.Add(ref h, 2 * Buckets + (int)(bits[i + 2] >> shift))++;
            Unsafe.Add(ref h, 3 * Buckets + (int)(bits[i + 3] >> shift))++;
        }
        for (; i < n; i++) Unsafe.Add(ref h, (int)(bits[i] >> shift))++;
        var histogram = histograms[..Buckets];
        for (int b = 0; b < Buckets; b++)
            histogram[b] += histograms[Buckets + b] + histograms[2 * Buckets + b] + histograms[3 * Buckets + b];
        int bucket = FindBucket(histogram, k, out above);

        int m = 0;
        foreach (uint b in bits) if ((b >> shift) == (uint)bucket) members[m++] = b;
        uint prefix = (uint)bucket << shift;
        int remaining = k - above;
        m = Narrow(members, m, LowBits, MiddleBits, histogram, ref prefix, ref remaining, ref above);
        Narrow(members, m, 0, LowBits, histogram, ref prefix, ref remaining, ref above);
        return prefix;
    }

    /// <summary>Fixes <paramref name="width"/> more bits of the threshold from the bucket's members; keeps the members that match.</summary>
    private static int Narrow(Span<uint> members, int m, int bitShift, int width, Span<uint> histogram,
        ref uint prefix, ref int remaining, ref int above)
    {
        var h = histogram[..(1 << width)];
        h.Clear();
        uint mask = (1u << width) - 1;
        for (int i = 0; i < m; i++) h[(int)((members[i] >> bitShift) & mask)]++;
        int sub = FindBucket(h, remaining, out int subAbove);
        above += subAbove;
        remaining -= subAbove;
        prefix |= (uint)sub << bitShift;
        int kept = 0;
        for (int i = 0; i < m; i++) if (((members[i] >> bitShift) & mask) == (uint)sub) members[kept++] = members[i];
        return kept;
    }

    /// <summary>Highest bucket b such that the counts of buckets &gt;= b reach k; <paramref name="above"/> counts those above b.</summary>
    private static int FindBucket(Span<uint> histogram, int k, out int above)
    {
        int total = 0;
        for (int b = histogram.Length - 1; b >= 0; b--)
        {
            int next = total + (int)histogram[b];
            if (next >= k)
            {
                above = total;
                return b;
            }
            total = next;
        }
        throw new InvalidOperationException("top-k: histogram holds fewer than k values");
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
